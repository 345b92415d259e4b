"""The reference autograd (tests/reference.py) checked on its own against finite differences.

The engine tests trust the reference to 1e-9, so the reference must earn it here first.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from dags import ALL_ACTIVATIONS, kink_distance, random_inputs, random_network_dict, random_targets
from reference import (
    LOSSES,
    REDUCTIONS,
    activation_derivative,
    activation_value,
    numeric_gradient,
    reference_forward,
    reference_gradients,
    reference_objective,
)

POINTS = [-2.3, -0.7, -0.05, 0.05, 0.4, 1.9]


@pytest.mark.parametrize("name", ALL_ACTIVATIONS)
def test_activation_derivative_matches_finite_differences(name: str) -> None:
    for z in POINTS:
        fd = numeric_gradient(lambda p: activation_value(name, p[0]), [z], h=1e-3)[0]
        assert activation_derivative(name, z) == pytest.approx(fd, rel=1e-9, abs=1e-11), z


@pytest.mark.parametrize("name, z, f, fprime", [
    ("relu", 0.0, 0.0, 0.0), ("relu", -1.0, 0.0, 0.0), ("relu", 2.0, 2.0, 1.0),
    ("leaky_relu", 0.0, 0.0, 0.01), ("leaky_relu", -2.0, -0.02, 0.01),
    ("elu", 0.0, 0.0, 1.0), ("elu", -1.0, math.exp(-1) - 1, math.exp(-1)),
    ("abs", 0.0, 0.0, 0.0), ("abs", -3.0, 3.0, -1.0),
    ("sigmoid", 0.0, 0.5, 0.25), ("softplus", 0.0, math.log(2), 0.5),
    # gelu in the erf form: Φ(1) = 0.8413447460685429 (the tanh approximation gives 0.8411919906)
    ("gelu", 1.0, 0.8413447460685429, 0.8413447460685429 + math.exp(-0.5) / math.sqrt(2 * math.pi)),
    ("silu", 0.0, 0.0, 0.5), ("gauss", 1.0, math.exp(-1), -2 * math.exp(-1)),
    ("sin", 0.0, 0.0, 1.0), ("tanh", 0.0, 0.0, 1.0), ("identity", -4.0, -4.0, 1.0),
])
def test_activation_values_and_kink_conventions(name: str, z: float, f: float, fprime: float) -> None:
    assert activation_value(name, z) == pytest.approx(f, rel=1e-14, abs=1e-300)
    assert activation_derivative(name, z) == pytest.approx(fprime, rel=1e-14, abs=1e-300)


def _smooth_case(seed: int, **kwargs):
    """A random network and inputs whose pre-activations stay clear of every kink."""
    for s in range(seed, seed + 200):
        data = random_network_dict(s, **kwargs)
        X = random_inputs(s, 3, len(data["inputs"]))
        z, _ = reference_forward(data, X)
        if kink_distance(z, [n["activation"] for n in data["nodes"]]) > 0.02:
            return data, X
    raise AssertionError("no kink-free case found")


def _params(data):
    return [e["weight"] for e in data["edges"]], [n.get("bias", 0.0) for n in data["nodes"]]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_output_mode_matches_finite_differences(seed: int) -> None:
    data, X = _smooth_case(seed * 1000)
    w, b = _params(data)
    ref = reference_gradients(data, X)
    fd_w = numeric_gradient(lambda p: reference_objective(data, X, weights=p)[0], w)  # E×B×K
    fd_b = numeric_gradient(lambda p: reference_objective(data, X, biases=p)[0], b)   # N×B×K
    np.testing.assert_allclose(ref.edge_grads, fd_w.transpose(1, 2, 0), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(ref.deltas, fd_b.transpose(1, 2, 0), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_loss_mode_matches_finite_differences(loss: str, reduction: str) -> None:
    out_acts = ("sigmoid",) if loss == "bce" else None
    data, X = _smooth_case(77, n_outputs=3, output_activations=out_acts)
    T = random_targets(5, loss, X.shape[0], len(data["outputs"]))
    w, b = _params(data)
    ref = reference_gradients(data, X, T, loss, reduction)
    fd_w = numeric_gradient(lambda p: reference_objective(data, X, T, loss, reduction, weights=p)[1], w)
    fd_b = numeric_gradient(lambda p: reference_objective(data, X, T, loss, reduction, biases=p)[1], b)
    np.testing.assert_allclose(ref.edge_grads, fd_w, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(ref.deltas, fd_b, rtol=1e-7, atol=1e-10)
    assert ref.loss == pytest.approx(reference_objective(data, X, T, loss, reduction)[1], rel=1e-14)
    assert np.abs(ref.edge_grads).max() > 1e-6  # the check above was not vacuous
    each = reference_gradients(data, X, T, loss, reduction, per_example=True)
    assert each.edge_grads.shape == (X.shape[0], len(w))
    np.testing.assert_allclose(each.edge_grads.sum(axis=0), ref.edge_grads, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(each.deltas.sum(axis=0), ref.deltas, rtol=1e-12, atol=1e-14)
    assert each.loss == pytest.approx(ref.loss, rel=1e-12)


def test_loss_values_by_hand() -> None:
    # one identity output reading x directly: y = x
    data = {"inputs": ["x"], "outputs": ["y"], "nodes": [{"id": "y"}],
            "edges": [{"src": "x", "dst": "y", "weight": 1.0}]}
    X = [[0.25], [0.75]]
    # mse mean: ((0.25-0)^2 + (0.75-1)^2) / 2 = 0.0625
    assert reference_gradients(data, X, [[0.0], [1.0]], "mse").loss == pytest.approx(0.0625)
    # bce sum: -(ln 0.75 + ln 0.75)
    assert reference_gradients(data, X, [[0.0], [1.0]], "bce", "sum").loss == pytest.approx(-2 * math.log(0.75))
    # bce with a log clamped at -100: y = 0, t = 1 -> 100; its derivative is 0 (the clamp is flat)
    ref = reference_gradients(data, [[0.0]], [[1.0]], "bce")
    assert ref.loss == pytest.approx(100.0) and ref.edge_grads[0] == 0.0
