"""Network.from_layers, networkx round trips, and the missing-extra error."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from dags import random_network

import edgegrad
from edgegrad.interop.layers import layer_grads

nx = pytest.importorskip("networkx", reason="networkx not installed (pip install 'edgegrad[networkx]')")


def _numpy_mlp(weights: list, biases: list, acts: list, X: np.ndarray) -> np.ndarray:
    funcs = {"tanh": np.tanh, "identity": lambda z: z, "relu": lambda z: np.maximum(z, 0)}
    h = X
    for W, b, a in zip(weights, biases, acts):
        h = funcs[a](h @ np.asarray(W).T + b)
    return h


def test_from_layers_computes_the_layers_and_names_units() -> None:
    rng = np.random.default_rng(0)
    W = [rng.normal(size=(4, 3)), rng.normal(size=(2, 4))]
    b = [rng.normal(size=4), rng.normal(size=2)]
    net = edgegrad.Network.from_layers(W, b, ["tanh", "identity"])
    assert net.inputs == ("l0_0", "l0_1", "l0_2") and net.outputs == ("l2_0", "l2_1")
    assert net.edge_pairs()[:2] == [["l0_0", "l1_0"], ["l0_1", "l1_0"]]
    X = rng.normal(size=(5, 3))
    res = edgegrad.gradients(net, X, targets=np.zeros((5, 2)), loss="mse")
    np.testing.assert_allclose(res.outputs, _numpy_mlp(W, b, ["tanh", "identity"], X), rtol=1e-12)
    last = layer_grads(res.edge_grads, [w.shape for w in W])[1]   # ∂L/∂W2 = (2/BK) Σ_b (y-t) h^T
    h = np.tanh(X @ W[0].T + b[0])
    np.testing.assert_allclose(last, 2 * res.outputs.T @ h / 10, rtol=1e-12)


def test_from_layers_defaults_and_list_inputs() -> None:
    net = edgegrad.Network.from_layers([[[1.0, 2.0]]])
    assert net.activations == ("identity",) and net.biases.tolist() == [0.0]
    assert edgegrad.gradients(net, [[3.0, 4.0]]).outputs.tolist() == [[11.0]]


@pytest.mark.parametrize("args, message", [
    (([],), "weights: expected a non-empty list"),
    (([np.ones(3)],), "weights[0]: expected a non-empty out×in matrix, got shape (3,)"),
    (([np.ones((2, 3)), np.ones((1, 3))],), "weights[1]: has 3 columns but layer 1 has 2 units"),
    (([np.array([[1.0, np.nan]])],), "weights[0][0][1]: must be finite"),
    (([np.ones((2, 3))], [np.ones(3)]), "biases[0]: expected shape (2,), got (3,)"),
    (([np.ones((2, 3))], None, ["tanh", "relu"]), "activations: expected 1 names"),
    (([np.ones((2, 3))], None, ["swish"]), "activations[0]: unknown activation 'swish'"),
])
def test_from_layers_names_the_bad_part(args: tuple, message: str) -> None:
    with pytest.raises(edgegrad.InvalidInput) as info:
        edgegrad.Network.from_layers(*args)
    assert message in str(info.value)


@pytest.mark.parametrize("seed", range(6))
def test_networkx_round_trip_is_the_same_network(seed: int) -> None:
    net = random_network(seed, n_nodes=12)
    g = net.to_networkx()
    assert g.graph["inputs"] == list(net.inputs) and g.graph["outputs"] == list(net.outputs)
    assert all(g.nodes[v]["activation"] == a for v, a in zip(net.node_ids, net.activations))
    back = edgegrad.Network.from_networkx(g)
    assert back == net and back.edge_pairs() == net.edge_pairs()


def test_from_networkx_infers_inputs_and_outputs_from_a_plain_graph() -> None:
    g = nx.DiGraph()
    g.add_node("h", activation="tanh", bias=0.5)
    g.add_edge("x", "h", weight=2.0)
    g.add_edge("h", "y", weight=-1.0)
    g.add_edge(1, "y", weight=3.0)          # an int label becomes "1", an input
    net = edgegrad.Network.from_networkx(g)
    assert net.inputs == ("x", "1") and net.outputs == ("y",) and net.node_ids == ("h", "y")
    out = edgegrad.gradients(net, [[0.25, 1.0]]).outputs
    np.testing.assert_allclose(out, [[-np.tanh(0.5 + 0.5) + 3.0]], rtol=1e-15)


@pytest.mark.parametrize("build, message", [
    (lambda: nx.Graph([("a", "b")]), "graph: expected a directed networkx graph, got Graph"),
    (lambda: nx.DiGraph([("a", "b")]), "edges[a -> b].weight: missing"),
    (lambda: nx.DiGraph([("a", "b", {"weight": "x"})]), "edges[a -> b].weight: expected a number"),
    (lambda: nx.DiGraph([(1, "1", {"weight": 1.0})]), "two node labels have the same text"),
    (lambda: nx.DiGraph([("a", "b", {"weight": 1.0})], inputs=["q"]), "graph.inputs: 'q' is not a node"),
    (lambda: nx.DiGraph([("a", "b", {"weight": 1.0}), ("b", "a", {"weight": 1.0})], inputs=[], outputs=["a"]),
     "cycle"),
])
def test_from_networkx_names_the_bad_part(build, message: str) -> None:
    with pytest.raises(edgegrad.InvalidInput) as info:
        edgegrad.Network.from_networkx(build())
    assert message in str(info.value)


@pytest.mark.service  # starts a process
def test_a_missing_library_names_the_extra_to_install() -> None:
    code = ("import sys; sys.modules['torch'] = None\n"
            "import edgegrad\n"
            "try:\n    edgegrad.Network.from_torch(object())\n"
            "except ImportError as e:\n    print(type(e).__name__, e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("MissingExtra Network.from_torch needs torch, which is not installed")
    assert "pip install 'edgegrad[torch]'" in out


@pytest.mark.service  # starts a process
def test_importing_edgegrad_imports_none_of_the_optional_libraries() -> None:
    code = "import sys, edgegrad; print(sorted(m for m in ('torch', 'neat', 'networkx') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
