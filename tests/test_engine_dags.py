"""Random DAGs with the awkward cases, engine against the reference autograd to 1e-9 relative."""

from __future__ import annotations

import numpy as np
import pytest
from dags import random_inputs, random_network_dict, random_targets
from reference import LOSSES, assert_agrees, reference_forward, reference_gradients

import edgegrad
from edgegrad import Network
from edgegrad.engine.api import node_values

pytestmark = pytest.mark.usefixtures("each_kernel")  # every test on the numpy and the compiled kernels

SEEDS = list(range(0, 120, 7))


@pytest.mark.parametrize("seed", SEEDS)
def test_output_mode_agrees_with_reference(seed: int) -> None:
    sizes = dict(n_inputs=2 + seed % 3, n_nodes=5 + seed % 9, n_outputs=1 + seed % 4, p_edge=(0.2, 0.45, 0.8)[seed % 3])
    data = random_network_dict(seed, **sizes)
    net = Network.from_dict(data)
    X = random_inputs(seed, 1 + seed % 5, net.n_inputs)
    got = edgegrad.gradients(net, X)
    B, K, E, N = X.shape[0], net.n_outputs, net.n_edges, net.n_nodes
    assert got.outputs.shape == (B, K) and got.edge_grads.shape == (B, K, E) and got.deltas.shape == (B, K, N)
    assert got.loss is None
    assert got.outputs.dtype == got.edge_grads.dtype == got.deltas.dtype == np.float64
    assert_agrees(got, reference_gradients(data, X))


@pytest.mark.parametrize("seed", SEEDS[::2])
@pytest.mark.parametrize("loss", LOSSES)
def test_loss_mode_agrees_with_reference(seed: int, loss: str) -> None:
    out_acts = ("sigmoid",) if loss == "bce" else None
    data = random_network_dict(seed, n_nodes=6 + seed % 7, n_outputs=1 + seed % 3, output_activations=out_acts)
    net = Network.from_dict(data)
    X = random_inputs(seed, 3, net.n_inputs)
    T = random_targets(seed, loss, 3, net.n_outputs)
    for reduction in ("mean", "sum"):
        for per_example in (False, True):
            got = edgegrad.gradients(net, X, targets=T, loss=loss, reduction=reduction, per_example=per_example)
            assert_agrees(got, reference_gradients(data, X, T, loss, reduction, per_example))


@pytest.mark.parametrize("seed", SEEDS[:6])
def test_node_values_agree_with_reference_forward(seed: int) -> None:
    data = random_network_dict(seed, n_nodes=9)
    net = Network.from_dict(data)
    X = random_inputs(seed, 4, net.n_inputs)
    nv = node_values(net, X)
    z, o = reference_forward(data, X)
    np.testing.assert_allclose(nv.z, z, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(nv.o, o, rtol=1e-12, atol=1e-14)
    assert nv.fprime.shape == z.shape


def test_the_awkward_cases_are_really_there_and_behave() -> None:
    data = random_network_dict(5, n_inputs=3, n_nodes=9, n_outputs=3)
    net = Network.from_dict(data)
    pairs = [tuple(p) for p in net.edge_pairs()]
    dead, bias_only, unused = "n1", "n0", net.inputs[-1]
    assert not any(s == dead for s, _ in pairs) and dead not in net.outputs        # dead node
    assert not any(d == bias_only for _, d in pairs)                               # bias-only node
    assert not any(s == unused for s, _ in pairs)                                  # unused input
    assert any(s in net.outputs and d in net.outputs for s, d in pairs)            # output -> output
    assert ("x0", f"n{net.n_nodes - 1}") in pairs                                  # skip edge
    assert len(set(net.activations)) >= 3                                          # mixed activations
    X = random_inputs(5, 4, net.n_inputs)
    res = edgegrad.gradients(net, X)
    d = net.node_ids.index(dead)
    assert (res.deltas[:, :, d] == 0).all()
    into_dead = [e for e, (_, v) in enumerate(pairs) if v == dead]
    assert into_dead and (res.edge_grads[:, :, into_dead] == 0).all()
    T = random_targets(5, "mse", 4, net.n_outputs)
    for per_example in (False, True):
        lres = edgegrad.gradients(net, X, targets=T, loss="mse", per_example=per_example)
        assert (lres.deltas[..., d] == 0).all() and (lres.edge_grads[..., into_dead] == 0).all()
    # the bias-only node is live: z = bias in every example, and it reaches the last output
    b = net.node_ids.index(bias_only)
    z = node_values(net, X).z
    assert (z[:, b] == net.biases[b]).all()
    assert (bias_only, f"n{net.n_nodes - 1}") in pairs


def test_output_feeding_output_keeps_its_direct_term() -> None:
    # y1 = tanh(x); y2 = 2·y1 + x. δ_{y1}(y1) = f'(z1); δ_{y2}(y1) = 2 f'(z1); δ_{y1}(y2) = 0.
    net = Network.from_dict({"inputs": ["x"], "outputs": ["y2", "y1"],
                             "nodes": [{"id": "y2"}, {"id": "y1", "activation": "tanh"}],
                             "edges": [{"src": "y1", "dst": "y2", "weight": 2.0},
                                       {"src": "x", "dst": "y1", "weight": 1.0},
                                       {"src": "x", "dst": "y2", "weight": 1.0}]})
    x = 0.5
    res = edgegrad.gradients(net, [[x]])
    fp = 1 - np.tanh(x) ** 2
    # outputs listed as [y2, y1]; nodes as [y2, y1]
    np.testing.assert_allclose(res.outputs, [[2 * np.tanh(x) + x, np.tanh(x)]], rtol=1e-15)
    np.testing.assert_allclose(res.deltas[0], [[1.0, 2 * fp], [0.0, fp]], rtol=1e-15)
    # edges: y1->y2, x->y1, x->y2
    np.testing.assert_allclose(res.edge_grads[0], [[np.tanh(x), 2 * fp * x, x], [0.0, fp * x, 0.0]], rtol=1e-15)


def test_network_without_edges_and_single_example() -> None:
    net = Network.from_dict({"inputs": ["a", "b"], "outputs": ["y", "z"],
                             "nodes": [{"id": "y", "activation": "sigmoid", "bias": 0.0},
                                       {"id": "z", "activation": "relu", "bias": -1.0}]})
    res = edgegrad.gradients(net, [[3.0, 4.0]])
    np.testing.assert_array_equal(res.outputs, [[0.5, 0.0]])
    np.testing.assert_array_equal(res.deltas, [[[0.25, 0.0], [0.0, 0.0]]])
    assert res.edge_grads.shape == (1, 2, 0)
    lres = edgegrad.gradients(net, [[3.0, 4.0]], targets=[[1.0, 0.0]], loss="mse")
    assert lres.loss == pytest.approx(0.125)             # ((0.5-1)^2 + 0) / 2
    np.testing.assert_allclose(lres.deltas, [-0.125, 0.0])  # 2(0.5-1)/2 · 0.25


def test_wide_batch_agrees_with_row_by_row() -> None:
    # the batched engine must not mix examples: a batch equals its rows computed one at a time
    data = random_network_dict(21, n_nodes=12, n_outputs=3)
    net = Network.from_dict(data)
    X = random_inputs(21, 64, net.n_inputs)
    whole = edgegrad.gradients(net, X)
    for b in (0, 17, 63):
        one = edgegrad.gradients(net, X[b:b + 1])
        np.testing.assert_allclose(whole.edge_grads[b], one.edge_grads[0], rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(whole.deltas[b], one.deltas[0], rtol=1e-13, atol=1e-15)
