"""Small random DAG networks for the engine tests, with the awkward cases built in on purpose.

Every generated network (unless switched off) has: a bias-only node (no incoming edge), a dead
node that reaches no output, an output that feeds another output (when K >= 2), a skip edge
from an input to the last node, an unused input, mixed activations, and node/edge file orders
that differ from the topological order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st

from edgegrad import Network

__all__ = [
    "ALL_ACTIVATIONS",
    "SMOOTH_ACTIVATIONS",
    "random_network_dict",
    "random_network",
    "random_inputs",
    "random_targets",
    "network_seeds",
    "permuted",
    "kink_distance",
]

ALL_ACTIVATIONS = ("identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus",
                   "gelu", "silu", "sin", "gauss", "abs")
#: activations whose derivative is continuous everywhere (finite differences work at any point)
SMOOTH_ACTIVATIONS = ("identity", "sigmoid", "tanh", "softplus", "gelu", "silu", "sin", "gauss")
_KINKED = ("relu", "leaky_relu", "elu", "abs")


def random_network_dict(seed: int, *, n_inputs: int = 3, n_nodes: int = 8, n_outputs: int = 2,
                        p_edge: float = 0.45, activations: Sequence[str] = ALL_ACTIVATIONS,
                        awkward: bool = True, output_activations: Sequence[str] | None = None
                        ) -> dict[str, Any]:
    """A random valid network in the JSON form; same seed, same network."""
    rng = np.random.default_rng(seed)
    n_inputs = max(n_inputs, 2 if awkward else 1)
    n_nodes = max(n_nodes, n_outputs + (3 if awkward else 0))
    inputs = [f"x{i}" for i in range(n_inputs)]
    topo = [f"n{i}" for i in range(n_nodes)]  # topological order of the computed nodes
    outputs = _choose_outputs(rng, n_nodes, n_outputs, awkward)
    vertices = inputs + topo
    edges: set[tuple[int, int]] = set()
    for v in range(n_inputs, len(vertices)):
        for u in range(v):
            if rng.random() < p_edge:
                edges.add((u, v))
    if awkward:
        unused = n_inputs - 1                           # an input that feeds nothing
        bias_only = n_inputs                            # the first node has no incoming edge
        dead = n_inputs + _first_non_output(outputs, n_nodes)  # reaches no output
        edges = {(u, v) for (u, v) in edges if u != unused and v != bias_only and u != dead}
        edges.add((bias_only, dead))                    # the dead node still reads something
        edges.add((0, len(vertices) - 1))               # skip edge: input straight to the last node
        edges.add((bias_only, len(vertices) - 1))
        if len(outputs) >= 2:                           # an output feeding a later output
            a, b = sorted(outputs)[:2]
            edges.add((n_inputs + a, n_inputs + b))
        for o in outputs:                               # every output reads something real
            if not any(v == n_inputs + o and u != bias_only for u, v in edges):
                edges.add((0, n_inputs + o))
    edge_list = sorted(edges)
    rng.shuffle(edge_list)                              # file order != topological order
    file_order = list(range(n_nodes))
    rng.shuffle(file_order)
    out_acts = list(output_activations) if output_activations else list(activations)
    nodes = []
    for i in file_order:
        acts = out_acts if i in outputs else list(activations)
        node: dict[str, Any] = {"id": topo[i], "activation": str(rng.choice(acts))}
        if rng.random() < 0.8:
            node["bias"] = float(rng.uniform(-0.8, 0.8))
        nodes.append(node)
    out_ids = [topo[i] for i in outputs]
    rng.shuffle(out_ids)
    return {
        "format": "edgegrad.network/v1",
        "inputs": inputs,
        "outputs": out_ids,
        "nodes": nodes,
        "edges": [{"src": vertices[u], "dst": vertices[v],
                   "weight": float(rng.choice([-1, 1]) * rng.uniform(0.3, 1.3))} for u, v in edge_list],
    }


def _choose_outputs(rng: np.random.Generator, n_nodes: int, k: int, awkward: bool) -> list[int]:
    # keep node 0 (bias-only) and node 1 (dead) free of outputs; the last node is always an output
    first = 2 if awkward else 0
    pool = list(range(first, n_nodes - 1))
    rest = [int(i) for i in rng.choice(pool, size=min(k - 1, len(pool)), replace=False)] if k > 1 else []
    return sorted(rest + [n_nodes - 1])


def _first_non_output(outputs: list[int], n_nodes: int) -> int:
    return next(i for i in range(1, n_nodes) if i not in outputs)


def random_network(seed: int, **kwargs: Any) -> Network:
    """:func:`random_network_dict`, validated into a :class:`Network`."""
    return Network.from_dict(random_network_dict(seed, **kwargs))


def random_inputs(seed: int, batch: int, n_inputs: int, scale: float = 1.2) -> np.ndarray:
    """B×I inputs drawn uniformly from [-scale, scale]."""
    return np.random.default_rng(seed + 7919).uniform(-scale, scale, size=(batch, n_inputs))


def random_targets(seed: int, loss: str, batch: int, k: int) -> np.ndarray:
    """B×K targets fitting the loss: reals for mse, [0,1] for bce, probability rows for softmax_ce."""
    rng = np.random.default_rng(seed + 104729)
    if loss == "mse":
        return rng.normal(size=(batch, k))
    if loss == "bce":
        t = rng.uniform(0, 1, size=(batch, k))
        t[0, 0] = 1.0  # hard labels too
        if k > 1:
            t[0, 1] = 0.0
        return t
    p = rng.uniform(0.05, 1.0, size=(batch, k))
    return p / p.sum(axis=1, keepdims=True)


@st.composite
def network_seeds(draw: st.DrawFn, max_nodes: int = 9) -> dict[str, Any]:
    """Hypothesis strategy: keyword arguments for :func:`random_network_dict` (seed and sizes)."""
    return {
        "seed": draw(st.integers(0, 2**31 - 1)),
        "n_inputs": draw(st.integers(2, 4)),
        "n_nodes": draw(st.integers(4, max_nodes)),
        "n_outputs": draw(st.integers(1, 3)),
        "p_edge": draw(st.sampled_from([0.25, 0.45, 0.7])),
    }


def permuted(data: dict[str, Any], edge_perm: Sequence[int] | None = None,
             node_perm: Sequence[int] | None = None) -> dict[str, Any]:
    """The same network with ``edges`` and/or ``nodes`` listed in a new order (new[i] = old[perm[i]])."""
    out = dict(data)
    if edge_perm is not None:
        out["edges"] = [data["edges"][i] for i in edge_perm]
    if node_perm is not None:
        out["nodes"] = [data["nodes"][i] for i in node_perm]
    return out


def kink_distance(z: np.ndarray, activations: Sequence[str]) -> float:
    """Smallest |z| over nodes whose activation has a kink at 0 (inf when there are none)."""
    cols = [i for i, a in enumerate(activations) if a in _KINKED]
    if not cols:
        return float("inf")
    return float(np.min(np.abs(np.asarray(z)[:, cols])))
