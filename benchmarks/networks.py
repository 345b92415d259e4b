"""Seeded, vectorised generators of benchmark networks, plus dense-layer recovery for the MLP baselines.

Every generator takes a seed and its sizes, so small versions of the big benchmark networks can be
built for correctness checks. No generator loops over edges in Python: the ~1M-edge irregular DAG
is built in well under a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from edgegrad import Network
from edgegrad.model.activations import ACTIVATION_NAMES

__all__ = ["irregular_dag", "medium_dag", "deep_narrow_dag", "mlp", "tiny", "build", "DenseLayer", "dense_layers",
           "batch"]

MLP_SIZES: tuple[int, ...] = (256, 1024, 1024, 256, 16)
BIAS_STD = 0.1


def irregular_dag(seed: int = 0, n_inputs: int = 256, n_levels: int = 16, width: int = 6000,
                  fan_in: int = 10, skip_fraction: float = 0.3, n_outputs: int = 16,
                  activations: Sequence[str] = ACTIVATION_NAMES, output_activation: str | None = None,
                  shuffle_edges: bool = True, shuffle_nodes: bool = False) -> Network:
    """The irregular DAG: ``n_levels`` levels of ``width`` nodes and a last level of ``n_outputs`` outputs.

    Every computed node reads ``fan_in`` distinct sources: each edge, with probability
    ``skip_fraction``, comes from any vertex of an earlier level (inputs included), otherwise from
    the previous level (level 1 reads only inputs). Fan-in is capped by the size of the pool it draws
    from, so tiny versions stay legal. Activations are drawn uniformly from ``activations`` (outputs
    too unless ``output_activation`` is given); weights ~ N(0, 1/fan_in), biases ~ N(0, 0.01).
    Edges are listed in a random order (and nodes too with ``shuffle_nodes``).
    """
    if min(n_inputs, n_levels, width, n_outputs, fan_in) < 1:
        raise ValueError("sizes must be positive")
    rng = np.random.default_rng(seed)
    sizes = np.array([n_inputs] + [width] * n_levels + [n_outputs], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)])           # level l spans starts[l]:starts[l+1]
    n_vertices = int(starts[-1])
    n_nodes = n_vertices - n_inputs
    level_of = np.repeat(np.arange(1, len(sizes)), sizes[1:])  # level of each computed node

    # one row of fan_in slots per computed node; each slot draws from the skip or the previous-level pool
    prev_lo, prev_hi = starts[level_of - 1], starts[level_of]
    skip_hi = starts[level_of - 1]                              # skip pool is [0, starts[l-1])
    skip = (rng.random((n_nodes, fan_in)) < skip_fraction) & (skip_hi > 0)[:, None]
    prev_size, skip_size = (prev_hi - prev_lo)[:, None], skip_hi[:, None]
    keep = np.where(skip, np.cumsum(skip, axis=1) <= skip_size, np.cumsum(~skip, axis=1) <= prev_size)
    lo = np.where(skip, 0, prev_lo[:, None])
    size = np.where(skip, skip_size, prev_size)
    src = lo + (rng.random((n_nodes, fan_in)) * size).astype(np.int64)
    # dropped slots get distinct negative sources so they never look like duplicates
    src[~keep] = -1 - np.flatnonzero(~keep.ravel())
    _redraw_duplicates(src, lo, size, rng)

    dst = np.broadcast_to(np.arange(n_inputs, n_vertices)[:, None], src.shape)
    src, dst = src[keep], dst[keep]
    weights = rng.standard_normal(src.size) / np.sqrt(np.bincount(dst, minlength=n_vertices)[dst])
    biases = rng.standard_normal(n_nodes) * BIAS_STD
    codes = rng.integers(0, len(activations), n_nodes)
    acts = [activations[c] for c in codes.tolist()]
    if output_activation is not None:
        acts[n_nodes - n_outputs:] = [output_activation] * n_outputs

    node_ids = [f"h{l}_{j}" for l in range(1, n_levels + 1) for j in range(width)]
    node_ids += [f"y{k}" for k in range(n_outputs)]
    outputs = node_ids[n_nodes - n_outputs:]
    if shuffle_nodes:
        order = rng.permutation(n_nodes)                        # file position -> generated node
        new_pos = np.empty(n_nodes, dtype=np.int64)
        new_pos[order] = np.arange(n_nodes)
        node_ids = [node_ids[i] for i in order.tolist()]
        acts = [acts[i] for i in order.tolist()]
        biases = biases[order]
        remap = np.concatenate([np.arange(n_inputs), n_inputs + new_pos])
        src, dst = remap[src], remap[dst]
    inputs = [f"x{i}" for i in range(n_inputs)]
    return _build(inputs, outputs, node_ids, acts, biases, src, dst, weights, rng, shuffle_edges)


def mlp(seed: int = 0, sizes: Sequence[int] = MLP_SIZES, hidden_activation: str = "tanh",
        output_activation: str = "identity", shuffle_edges: bool = True) -> Network:
    """A dense MLP written as a DAG: every node of a layer reads every node of the layer before.

    Weights ~ N(0, 1/fan_in), biases ~ N(0, 0.01); edges listed in a random order unless told otherwise.
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError("an MLP needs at least two positive layer sizes")
    rng = np.random.default_rng(seed)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    srcs, dsts, ws = [], [], []
    for k in range(1, len(sizes)):
        n_in, n_out = sizes[k - 1], sizes[k]
        srcs.append(starts[k - 1] + np.tile(np.arange(n_in), n_out))
        dsts.append(starts[k] + np.repeat(np.arange(n_out), n_in))
        ws.append(rng.standard_normal(n_in * n_out) / np.sqrt(n_in))
    n_nodes = int(starts[-1]) - sizes[0]
    biases = rng.standard_normal(n_nodes) * BIAS_STD
    node_ids = [f"l{k}_{j}" for k in range(1, len(sizes) - 1) for j in range(sizes[k])]
    node_ids += [f"y{j}" for j in range(sizes[-1])]
    acts = [hidden_activation] * (n_nodes - sizes[-1]) + [output_activation] * sizes[-1]
    inputs = [f"x{i}" for i in range(sizes[0])]
    return _build(inputs, node_ids[n_nodes - sizes[-1]:], node_ids, acts, biases,
                  np.concatenate(srcs), np.concatenate(dsts), np.concatenate(ws), rng, shuffle_edges)


def tiny(seed: int = 0) -> Network:
    """A 10-node irregular network (3 inputs, 4 levels of 2 nodes, 2 outputs, skip edges, mixed activations)."""
    return irregular_dag(seed, n_inputs=3, n_levels=4, width=2, fan_in=2, skip_fraction=0.3, n_outputs=2)


def medium_dag(seed: int = 0) -> Network:
    """The ~10k-edge irregular DAG of the batch figures: 64 inputs, 16 levels × 60 nodes, fan-in 10, 16 outputs."""
    return irregular_dag(seed, n_inputs=64, n_levels=16, width=60, fan_in=10, n_outputs=16)


def deep_narrow_dag(seed: int = 0, n_levels: int = 1500, width: int = 8) -> Network:
    """A deep narrow DAG: ``n_levels`` levels × ``width`` nodes, fan-in 4, 8 inputs, 8 outputs (per-level overhead)."""
    return irregular_dag(seed, n_inputs=8, n_levels=n_levels, width=width, fan_in=4, n_outputs=8)


def build(spec: dict) -> Network:
    """A network from a JSON-able spec: ``{"generator": name, **keyword args}`` (a generator of this module)."""
    spec = dict(spec)
    generator = {"irregular_dag": irregular_dag, "medium_dag": medium_dag, "deep_narrow_dag": deep_narrow_dag,
                 "mlp": mlp, "tiny": tiny}[spec.pop("generator")]
    return generator(**spec)


def batch(net: Network, size: int, seed: int = 0, dtype: str = "float64") -> tuple[np.ndarray, np.ndarray]:
    """Seeded inputs X (B×I, standard normal) and mse targets T (B×K, standard normal) for ``net``."""
    rng = np.random.default_rng(seed + 1_000_003)
    X = rng.standard_normal((size, net.n_inputs)).astype(dtype)
    T = rng.standard_normal((size, net.n_outputs)).astype(dtype)
    return X, T


class DenseLayer(NamedTuple):
    """One fully connected layer recovered from a network: ``z = W @ o_prev + b``, then ``activation``."""

    W: np.ndarray               #: out×in weights
    b: np.ndarray               #: out biases
    activation: str
    nodes: np.ndarray           #: node positions (file order) of the layer's outputs, in row order
    edge_rows: np.ndarray       #: row of W of each of the layer's edges, aligned with ``edge_ids``
    edge_cols: np.ndarray       #: column of W of each of the layer's edges
    edge_ids: np.ndarray        #: file positions of the layer's edges


def dense_layers(net: Network) -> list[DenseLayer]:
    """Recover the layers of a strictly layered, fully connected network with one activation per layer.

    Rows and columns follow file order within each level. Raises ``ValueError`` when the network is
    not such an MLP (an edge skipping a level, a missing edge, mixed activations within a layer).
    """
    levels = np.asarray(net.levels)
    n_in = net.n_inputs
    if np.any(levels[net.dst] != levels[net.src] + 1):
        raise ValueError("not an MLP: some edge skips a level")
    pos = np.zeros(levels.size, dtype=np.int64)                # position of each vertex within its level
    order = np.argsort(levels, kind="stable")
    counts = np.bincount(levels)
    pos[order] = np.arange(levels.size) - np.repeat(np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    layers = []
    for level in range(1, counts.size):
        vertices = order[np.sum(counts[:level]):np.sum(counts[:level + 1])]
        nodes = vertices - n_in
        names = {net.activations[i] for i in nodes.tolist()}
        if len(names) != 1:
            raise ValueError(f"not an MLP: level {level} mixes activations {sorted(names)}")
        edge_ids = np.flatnonzero(levels[net.dst] == level)
        shape = (int(counts[level]), int(counts[level - 1]))
        if edge_ids.size != shape[0] * shape[1]:
            raise ValueError(f"not an MLP: level {level} is not fully connected")
        rows, cols = pos[net.dst[edge_ids]], pos[net.src[edge_ids]]
        W = np.zeros(shape)
        W[rows, cols] = net.weights[edge_ids]
        layers.append(DenseLayer(W, net.biases[nodes].copy(), names.pop(), nodes, rows, cols, edge_ids))
    return layers


# ------------------------------------------------------------------ helpers
def _redraw_duplicates(src: np.ndarray, lo: np.ndarray, size: np.ndarray, rng: np.random.Generator) -> None:
    """Redraw, in place, every source that repeats an earlier one in its row, until rows are distinct."""
    while True:
        order = np.argsort(src, axis=1, kind="stable")
        ranked = np.take_along_axis(src, order, axis=1)
        repeat = np.zeros(src.shape, dtype=bool)
        repeat[:, 1:] = ranked[:, 1:] == ranked[:, :-1]
        if not repeat.any():
            return
        rows, slots = np.nonzero(repeat)
        cols = order[rows, slots]
        src[rows, cols] = lo[rows, cols] + (rng.random(rows.size) * size[rows, cols]).astype(np.int64)


def _build(inputs: list[str], outputs: list[str], node_ids: list[str], acts: list[str], biases: np.ndarray,
           src: np.ndarray, dst: np.ndarray, weights: np.ndarray, rng: np.random.Generator,
           shuffle_edges: bool) -> Network:
    if shuffle_edges:
        perm = rng.permutation(src.size)
        src, dst, weights = src[perm], dst[perm], weights[perm]
    return Network.from_arrays(inputs, outputs, node_ids, acts, biases, src, dst, weights)
