"""``Network.from_networkx`` / ``Network.to_networkx``: a network as a networkx ``DiGraph``.

Node attributes ``activation`` (default ``identity``) and ``bias`` (default 0) on computed nodes;
edge attribute ``weight`` (required). ``to_networkx`` also writes the graph attributes ``inputs``
and ``outputs`` (id lists) and each edge's position in file order as the edge attribute ``index``,
so ``from_networkx(net.to_networkx()) == net``. Without ``inputs``, the inputs are the nodes with
no incoming edge and neither ``activation`` nor ``bias``; without ``outputs``, the computed nodes
with no outgoing edge. Without ``index`` on every edge, edges come in ``g.edges`` order. Node
labels that are not strings become ``str(label)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidInput
from ..model.network import Network
from . import require

__all__ = ["from_networkx", "to_networkx"]


def to_networkx(net: Network) -> Any:
    """A ``networkx.DiGraph`` of ``net``: inputs, then computed nodes, then edges, all in file order."""
    nx = require("networkx", "networkx", "Network.to_networkx")
    g = nx.DiGraph(inputs=list(net.inputs), outputs=list(net.outputs))
    g.add_nodes_from(net.inputs)
    g.add_nodes_from((v, {"activation": a, "bias": b})
                     for v, a, b in zip(net.node_ids, net.activations, net.biases.tolist()))
    ids = net.vertex_ids
    g.add_edges_from((ids[s], ids[d], {"weight": w, "index": i}) for i, (s, d, w) in
                     enumerate(zip(net.src.tolist(), net.dst.tolist(), net.weights.tolist())))
    return g


def from_networkx(g: Any) -> Network:
    """The network a directed networkx graph describes (attributes as in the module docstring)."""
    require("networkx", "networkx", "Network.from_networkx")
    if not getattr(g, "is_directed", lambda: False)():
        raise InvalidInput(f"graph: expected a directed networkx graph, got {type(g).__name__}")
    labels = {v: v if isinstance(v, str) else str(v) for v in g.nodes}
    if len(set(labels.values())) != len(labels):
        raise InvalidInput("graph: two node labels have the same text (ids are str(label))")
    attrs = g.nodes
    if "inputs" in g.graph:
        inputs = [_label(v, labels, "graph.inputs") for v in g.graph["inputs"]]
    else:
        inputs = [labels[v] for v in g.nodes if g.in_degree(v) == 0
                  and "activation" not in attrs[v] and "bias" not in attrs[v]]
    input_set = set(inputs)
    computed = [v for v in g.nodes if labels[v] not in input_set]
    if "outputs" in g.graph:
        outputs = [_label(v, labels, "graph.outputs") for v in g.graph["outputs"]]
    else:
        outputs = [labels[v] for v in computed if g.out_degree(v) == 0]
    edges = list(g.edges(data=True))
    if edges and all(isinstance(d.get("index"), int) for _, _, d in edges):
        edges.sort(key=lambda e: e[2]["index"])
    weights = np.empty(len(edges))
    for e, (u, v, d) in enumerate(edges):
        if "weight" not in d:
            raise InvalidInput(f"edges[{labels[u]} -> {labels[v]}].weight: missing")
        weights[e] = _number(d["weight"], f"edges[{labels[u]} -> {labels[v]}].weight")
    return Network.from_arrays(
        inputs, outputs, [labels[v] for v in computed],
        [_text(attrs[v].get("activation", "identity"), f"nodes[{labels[v]}].activation") for v in computed],
        [_number(attrs[v].get("bias", 0.0), f"nodes[{labels[v]}].bias") for v in computed],
        [labels[u] for u, _, _ in edges], [labels[v] for _, v, _ in edges], weights)


def _label(v: Any, labels: dict[Any, str], place: str) -> str:
    text = v if isinstance(v, str) else str(v)
    if v not in labels and text not in labels.values():
        raise InvalidInput(f"{place}: '{text}' is not a node of the graph")
    return text


def _number(value: Any, place: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidInput(f"{place}: expected a number, got {type(value).__name__}")
    return float(value)


def _text(value: Any, place: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{place}: expected an activation name, got {type(value).__name__}")
    return value
