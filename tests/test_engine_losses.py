"""Every loss × reduction × per_example through the engine: finite differences and the reference."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from dags import kink_distance, random_inputs, random_network_dict, random_targets
from reference import (
    LOSSES,
    REDUCTIONS,
    assert_agrees,
    numeric_gradient,
    reference_forward,
    reference_gradients,
)

import edgegrad
from edgegrad import Network

pytestmark = pytest.mark.usefixtures("each_kernel")  # every test on the numpy and the compiled kernels

B = 4


def _case(loss: str, seed: int = 11) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """A 3-output random DAG (sigmoid outputs for bce) and inputs clear of every kink."""
    out_acts = ("sigmoid",) if loss == "bce" else None
    for s in range(seed, seed + 300):
        data = random_network_dict(s, n_inputs=3, n_nodes=8, n_outputs=3, output_activations=out_acts)
        X = random_inputs(s, B, 3)
        z, _ = reference_forward(data, X)
        if kink_distance(z, [n["activation"] for n in data["nodes"]]) > 0.02:
            return data, X, random_targets(s, loss, B, 3)
    raise AssertionError("no kink-free case")


def _with(net: Network, weights: Any = None, biases: Any = None) -> Network:
    return Network.from_arrays(net.inputs, net.outputs, net.node_ids, net.activations,
                               net.biases if biases is None else biases, net.src, net.dst,
                               net.weights if weights is None else weights)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_batch_gradient_matches_finite_differences(loss: str, reduction: str) -> None:
    data, X, T = _case(loss)
    net = Network.from_dict(data)
    res = edgegrad.gradients(net, X, targets=T, loss=loss, reduction=reduction)
    assert res.edge_grads.shape == (net.n_edges,) and res.deltas.shape == (net.n_nodes,)
    assert isinstance(res.loss, float)

    def L(w=None, b=None) -> float:
        return edgegrad.gradients(_with(net, w, b), X, targets=T, loss=loss, reduction=reduction).loss

    np.testing.assert_allclose(res.edge_grads, numeric_gradient(lambda w: L(w=w), net.weights), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(res.deltas, numeric_gradient(lambda b: L(b=b), net.biases), rtol=1e-6, atol=1e-9)
    assert np.abs(res.edge_grads).max() > 1e-4


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_per_example_rows_match_finite_differences(loss: str, reduction: str) -> None:
    # row b is example b's share: (1/B if mean else 1) × the gradient of the loss of the batch [b]
    data, X, T = _case(loss)
    net = Network.from_dict(data)
    res = edgegrad.gradients(net, X, targets=T, loss=loss, reduction=reduction, per_example=True)
    assert res.edge_grads.shape == (B, net.n_edges) and res.deltas.shape == (B, net.n_nodes)
    share = 1.0 / B if reduction == "mean" else 1.0
    for b in range(B):
        def L(w=None, bias=None, b=b) -> float:
            return share * edgegrad.gradients(_with(net, w, bias), X[b:b + 1], targets=T[b:b + 1], loss=loss,
                                              reduction=reduction).loss
        np.testing.assert_allclose(res.edge_grads[b], numeric_gradient(lambda w: L(w=w), net.weights),
                                   rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(res.deltas[b], numeric_gradient(lambda v: L(bias=v), net.biases),
                                   rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("per_example", [False, True])
def test_agrees_with_reference(loss: str, reduction: str, per_example: bool) -> None:
    for seed in (3, 40, 500):
        out_acts = ("sigmoid",) if loss == "bce" else None
        data = random_network_dict(seed, n_inputs=3, n_nodes=10, n_outputs=3, output_activations=out_acts)
        X = random_inputs(seed, 5, 3)
        T = random_targets(seed, loss, 5, 3)
        got = edgegrad.gradients(Network.from_dict(data), X, targets=T, loss=loss, reduction=reduction,
                                 per_example=per_example)
        assert_agrees(got, reference_gradients(data, X, T, loss, reduction, per_example))


@pytest.mark.parametrize("loss", LOSSES)
def test_per_example_rows_sum_to_batch_and_reductions_differ_by_the_count(loss: str) -> None:
    data, X, T = _case(loss, seed=90)
    net = Network.from_dict(data)
    runs = {(r, p): edgegrad.gradients(net, X, targets=T, loss=loss, reduction=r, per_example=p)
            for r in REDUCTIONS for p in (False, True)}
    for r in REDUCTIONS:
        batch, rows = runs[r, False], runs[r, True]
        np.testing.assert_allclose(rows.edge_grads.sum(axis=0), batch.edge_grads, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(rows.deltas.sum(axis=0), batch.deltas, rtol=1e-12, atol=1e-15)
        assert rows.loss == pytest.approx(batch.loss, rel=1e-14)
        np.testing.assert_array_equal(rows.outputs, batch.outputs)
    count = B if loss == "softmax_ce" else B * 3  # mean divides by B·K (by B for softmax_ce)
    mean, total = runs["mean", False], runs["sum", False]
    assert total.loss == pytest.approx(count * mean.loss, rel=1e-13)
    np.testing.assert_allclose(total.edge_grads, count * mean.edge_grads, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(total.deltas, count * mean.deltas, rtol=1e-12, atol=1e-15)


def test_default_reduction_is_mean() -> None:
    data, X, T = _case("mse")
    net = Network.from_dict(data)
    assert edgegrad.gradients(net, X, targets=T, loss="mse") == \
        edgegrad.gradients(net, X, targets=T, loss="mse", reduction="mean")


def test_bce_clamped_logs_are_flat_where_the_clamp_holds() -> None:
    # y = x (identity output), sum reduction. ℓ = −(t·max(ln y, −100) + (1−t)·max(ln(1−y), −100)):
    #   y = 0,     t = 1: ℓ = 100, clamp active -> ∂ℓ/∂y = 0
    #   y = 1,     t = 0: ℓ = 100, clamp active -> 0
    #   y = 1e-50, t = 1: ln y ≈ −115.1 < −100 -> ℓ = 100, ∂ℓ/∂y = 0
    #   y = 0.5,   t = 1: ℓ = ln 2, ∂ℓ/∂y = −1/y = −2
    # δ(y) = Σ = −2; ∂L/∂w(x,y) = Σ_b ∂ℓ_b/∂y · x_b = −2 · 0.5 = −1
    net = Network.from_dict({"inputs": ["x"], "outputs": ["y"], "nodes": [{"id": "y"}],
                             "edges": [{"src": "x", "dst": "y", "weight": 1.0}]})
    X, T = [[0.0], [1.0], [1e-50], [0.5]], [[1.0], [0.0], [1.0], [1.0]]
    res = edgegrad.gradients(net, X, targets=T, loss="bce", reduction="sum")
    assert res.loss == pytest.approx(300.0 + np.log(2.0), rel=1e-14)
    np.testing.assert_array_equal(res.deltas, [-2.0])
    np.testing.assert_array_equal(res.edge_grads, [-1.0])
    rows = edgegrad.gradients(net, X, targets=T, loss="bce", reduction="sum", per_example=True)
    np.testing.assert_array_equal(rows.deltas[:, 0], [0.0, 0.0, 0.0, -2.0])
    assert_agrees(rows, reference_gradients(net, X, T, "bce", "sum", per_example=True))


def test_softmax_ce_follows_the_formula_for_rows_that_do_not_sum_to_one() -> None:
    # L = −(1/B) Σ_b Σ_k t_bk ln softmax(y_b)_k is defined for any t in [0, 1]; ∂L/∂y = (softmax·Σ_k t − t)/B
    data, X, _ = _case("softmax_ce")
    T = np.random.default_rng(8).uniform(0.0, 0.6, size=(B, 3))
    T[0] = [0.0, 0.0, 0.0]
    for reduction in REDUCTIONS:
        for per_example in (False, True):
            got = edgegrad.gradients(Network.from_dict(data), X, targets=T, loss="softmax_ce",
                                     reduction=reduction, per_example=per_example)
            assert_agrees(got, reference_gradients(data, X, T, "softmax_ce", reduction, per_example))
