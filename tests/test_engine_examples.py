"""Hand-worked examples: numbers worked out on paper, checked against the engine and the reference."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from reference import reference_gradients

import edgegrad
from edgegrad import Network

pytestmark = pytest.mark.usefixtures("each_kernel")  # every test on the numpy and the compiled kernels

# The contract's example network (section 1).
CONTRACT_NET = {
    "format": "edgegrad.network/v1",
    "inputs": ["x1", "x2"],
    "outputs": ["y"],
    "nodes": [{"id": "h1", "activation": "sigmoid", "bias": 0.1}, {"id": "y", "activation": "identity"}],
    "edges": [{"src": "x1", "dst": "h1", "weight": 0.5}, {"src": "x2", "dst": "h1", "weight": -0.3},
              {"src": "h1", "dst": "y", "weight": 1.2}, {"src": "x1", "dst": "y", "weight": 0.7}],
}
X = [[1.0, 2.0], [-0.2, 0.0]]
# Row 0: z(h1) = 0.1 + 0.5·1 − 0.3·2 = 0      -> o(h1) = 0.5, f'(0) = 0.25
#        z(y)  = 1.2·0.5 + 0.7·1 = 1.3          -> y = 1.3
# Row 1: z(h1) = 0.1 + 0.5·(−0.2) − 0.3·0 = 0   -> o(h1) = 0.5, f'(0) = 0.25
#        z(y)  = 1.2·0.5 + 0.7·(−0.2) = 0.46    -> y = 0.46
# Output mode: δ(y) = 1, δ(h1) = f'(z_h1)·w(h1,y)·δ(y) = 0.25·1.2 = 0.3 in both rows.
#   ∂y/∂w(u,v) = δ(v)·o(u):
#   row 0: x1->h1 0.3·1 = 0.3, x2->h1 0.3·2 = 0.6, h1->y 1·0.5 = 0.5, x1->y 1·1 = 1
#   row 1: x1->h1 0.3·(−0.2) = −0.06, x2->h1 0, h1->y 0.5, x1->y −0.2
OUT_EDGES = [[[0.3, 0.6, 0.5, 1.0]], [[-0.06, 0.0, 0.5, -0.2]]]
OUT_DELTAS = [[[0.3, 1.0]], [[0.3, 1.0]]]
# mse, targets [1.0], [0.96], mean over B·K = 2:
#   residuals 0.3 and −0.5; L = (0.09 + 0.25)/2 = 0.17; ∂L/∂y = 2(y−t)/2 = 0.3, −0.5
#   per-example rows = ∂L/∂y_b × that row's output-mode gradients:
#   row 0: 0.3 × [0.3, 0.6, 0.5, 1] = [0.09, 0.18, 0.15, 0.3];   deltas 0.3 × [0.3, 1] = [0.09, 0.3]
#   row 1: −0.5 × [−0.06, 0, 0.5, −0.2] = [0.03, 0, −0.25, 0.1]; deltas −0.5 × [0.3, 1] = [−0.15, −0.5]
#   batch: [0.12, 0.18, −0.10, 0.4]; deltas [−0.06, −0.2]. `sum` doubles everything (L = 0.34).
T = [[1.0], [0.96]]
MSE_ROWS = [[0.09, 0.18, 0.15, 0.3], [0.03, 0.0, -0.25, 0.1]]
MSE_DELTA_ROWS = [[0.09, 0.3], [-0.15, -0.5]]


def _engine(data: dict[str, Any], X: Any, *args: Any, **kwargs: Any) -> Any:
    return edgegrad.gradients(Network.from_dict(data), X, *args, **kwargs)


def _reference(data: dict[str, Any], X: Any, targets: Any = None, loss: str | None = None,
               reduction: str = "mean", per_example: bool = False) -> Any:
    return reference_gradients(data, X, targets, loss, reduction, per_example)


IMPLS = pytest.mark.parametrize("impl", [_engine, _reference], ids=["engine", "reference"])
EXACT = dict(rtol=1e-14, atol=1e-15)


@IMPLS
def test_contract_example_output_mode(impl: Callable[..., Any]) -> None:
    res = impl(CONTRACT_NET, X)
    np.testing.assert_allclose(res.outputs, [[1.3], [0.46]], **EXACT)
    np.testing.assert_allclose(res.edge_grads, OUT_EDGES, **EXACT)
    np.testing.assert_allclose(res.deltas, OUT_DELTAS, **EXACT)
    assert res.loss is None


@IMPLS
@pytest.mark.parametrize("reduction, factor", [("mean", 1.0), ("sum", 2.0)])
def test_contract_example_mse(impl: Callable[..., Any], reduction: str, factor: float) -> None:
    batch = impl(CONTRACT_NET, X, targets=T, loss="mse", reduction=reduction)
    assert batch.loss == pytest.approx(0.17 * factor, rel=1e-14)
    np.testing.assert_allclose(batch.edge_grads, factor * np.sum(MSE_ROWS, axis=0), **EXACT)
    np.testing.assert_allclose(batch.deltas, factor * np.sum(MSE_DELTA_ROWS, axis=0), **EXACT)
    rows = impl(CONTRACT_NET, X, targets=T, loss="mse", reduction=reduction, per_example=True)
    np.testing.assert_allclose(rows.edge_grads, factor * np.array(MSE_ROWS), **EXACT)
    np.testing.assert_allclose(rows.deltas, factor * np.array(MSE_DELTA_ROWS), **EXACT)


@IMPLS
def test_the_output_activation_enters_every_edge_derivative(impl: Callable[..., Any]) -> None:
    # Same network, but y = sigmoid with bias −1.3: row 0 has z(y) = 0, so y = 0.5 and f'(z_y) = 0.25.
    # δ(y) = 0.25, δ(h1) = 0.25 · 1.2 · 0.25 = 0.075: every derivative of row 0 is scaled by 0.25.
    data = dict(CONTRACT_NET, nodes=[CONTRACT_NET["nodes"][0], {"id": "y", "activation": "sigmoid", "bias": -1.3}])
    res = impl(data, X[:1])
    np.testing.assert_allclose(res.outputs, [[0.5]], **EXACT)
    np.testing.assert_allclose(res.edge_grads, [[[0.075, 0.15, 0.125, 0.25]]], **EXACT)
    np.testing.assert_allclose(res.deltas, [[[0.075, 0.25]]], **EXACT)


SOFTMAX_NET = {
    "inputs": ["x"], "outputs": ["y1", "y2"],
    "nodes": [{"id": "y1"}, {"id": "y2"}],
    "edges": [{"src": "x", "dst": "y1", "weight": math.log(3.0)}],
}


@IMPLS
def test_softmax_ce_by_hand(impl: Callable[..., Any]) -> None:
    # row 0: x = 1 -> y = (ln 3, 0), softmax = (3/4, 1/4), t = (1, 0): ℓ = ln(4/3), ∂ℓ/∂y = (−1/4, 1/4)
    # row 1: x = 0 -> y = (0, 0),    softmax = (1/2, 1/2), t = (0, 1): ℓ = ln 2,     ∂ℓ/∂y = (1/2, −1/2)
    # mean divides by B = 2: L = ln(8/3)/2; edge x->y1: (−1/4·1 + 1/2·0)/2 = −1/8
    # deltas: ((−1/4 + 1/2)/2, (1/4 − 1/2)/2) = (1/8, −1/8)
    res = impl(SOFTMAX_NET, [[1.0], [0.0]], targets=[[1.0, 0.0], [0.0, 1.0]], loss="softmax_ce")
    assert res.loss == pytest.approx(math.log(8 / 3) / 2, rel=1e-14)
    np.testing.assert_allclose(res.edge_grads, [-0.125], **EXACT)
    np.testing.assert_allclose(res.deltas, [0.125, -0.125], **EXACT)
    rows = impl(SOFTMAX_NET, [[1.0], [0.0]], targets=[[1.0, 0.0], [0.0, 1.0]], loss="softmax_ce",
                reduction="sum", per_example=True)
    np.testing.assert_allclose(rows.deltas, [[-0.25, 0.25], [0.5, -0.5]], **EXACT)
    assert rows.loss == pytest.approx(math.log(8 / 3), rel=1e-14)


@IMPLS
@pytest.mark.parametrize("t, grad", [(1.0, -0.5), (0.25, 0.25), (0.0, 0.5)])
def test_bce_on_a_sigmoid_output_by_hand(impl: Callable[..., Any], t: float, grad: float) -> None:
    # y = sigmoid(2x − 2) at x = 1: z = 0, y = 1/2, f' = 1/4.
    # ℓ = −(t ln y + (1−t) ln(1−y)) = ln 2 for every t; ∂ℓ/∂y = −t/y + (1−t)/(1−y) = 2 − 4t;
    # δ(y) = (2 − 4t)/4 = 1/2 − t = y − t; ∂ℓ/∂w(x,y) = δ(y)·x = δ(y).
    data = {"inputs": ["x"], "outputs": ["y"], "nodes": [{"id": "y", "activation": "sigmoid", "bias": -2.0}],
            "edges": [{"src": "x", "dst": "y", "weight": 2.0}]}
    res = impl(data, [[1.0]], targets=[[t]], loss="bce")
    assert res.loss == pytest.approx(math.log(2.0), rel=1e-14)
    np.testing.assert_allclose(res.deltas, [grad], **EXACT)
    np.testing.assert_allclose(res.edge_grads, [grad], **EXACT)


@IMPLS
def test_two_paths_add_up(impl: Callable[..., Any]) -> None:
    # x -> a (identity, w 2) -> y (w 1); x -> y (w 3); a -> b (relu, w −1) -> y (w 5); y identity; x = 1.
    # z(a) = 2, o(a) = 2; z(b) = −2, o(b) = 0 and f'(z_b) = 0; y = 1·2 + 3·1 + 5·0 = 5.
    # δ(y) = 1; δ(b) = 0 · 5 = 0; δ(a) = 1 · (1·δ(y) + (−1)·δ(b)) = 1
    # ∂y/∂w: x->a δ(a)·x = 1; a->y δ(y)·o(a) = 2; x->y 1; a->b δ(b)·o(a) = 0; b->y δ(y)·o(b) = 0
    data = {"inputs": ["x"], "outputs": ["y"],
            "nodes": [{"id": "y"}, {"id": "b", "activation": "relu"}, {"id": "a"}],
            "edges": [{"src": "x", "dst": "a", "weight": 2.0}, {"src": "a", "dst": "y", "weight": 1.0},
                      {"src": "x", "dst": "y", "weight": 3.0}, {"src": "a", "dst": "b", "weight": -1.0},
                      {"src": "b", "dst": "y", "weight": 5.0}]}
    res = impl(data, [[1.0]])
    np.testing.assert_allclose(res.outputs, [[5.0]], **EXACT)
    np.testing.assert_allclose(res.edge_grads, [[[1.0, 2.0, 1.0, 0.0, 0.0]]], **EXACT)
    np.testing.assert_allclose(res.deltas, [[[1.0, 0.0, 1.0]]], **EXACT)  # nodes: y, b, a
