"""Every activation through the engine: finite differences, the reference, and the kink conventions."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from dags import ALL_ACTIVATIONS, kink_distance
from reference import (
    activation_derivative,
    activation_value,
    assert_agrees,
    numeric_gradient,
    reference_forward,
    reference_gradients,
)

import edgegrad
from edgegrad import Network
from edgegrad.engine.api import node_values

pytestmark = pytest.mark.usefixtures("each_kernel")  # every test on the numpy and the compiled kernels


def _net(act: str) -> dict[str, Any]:
    """The activation on a hidden node and on an output that feeds a second output."""
    return {
        "inputs": ["x1", "x2"],
        "outputs": ["y1", "y2"],
        "nodes": [
            {"id": "y2", "activation": "identity", "bias": -0.1},
            {"id": "h1", "activation": act, "bias": 0.3},
            {"id": "y1", "activation": act, "bias": -0.2},
            {"id": "h2", "activation": "tanh"},
        ],
        "edges": [
            {"src": "x1", "dst": "h1", "weight": 0.8},
            {"src": "h1", "dst": "y1", "weight": 1.1},
            {"src": "x2", "dst": "h1", "weight": -0.6},
            {"src": "h2", "dst": "y1", "weight": 0.9},
            {"src": "x1", "dst": "h2", "weight": 0.7},
            {"src": "y1", "dst": "y2", "weight": 1.3},
            {"src": "x2", "dst": "y2", "weight": 0.5},
        ],
    }


def _inputs_clear_of_kinks(data: dict[str, Any], batch: int = 6) -> np.ndarray:
    """Inputs with every z at least 0.05 from a kink, and a row where every kinked node is positive."""
    acts = [n["activation"] for n in data["nodes"]]
    for seed in range(500):
        X = np.random.default_rng(seed).uniform(-2.0, 2.0, size=(batch, 2))
        z = reference_forward(data, X)[0]
        kinked = [i for i, a in enumerate(acts) if a in ("relu", "leaky_relu", "elu", "abs")]
        if kink_distance(z, acts) > 0.05 and (z[:, kinked] > 0.05).all(axis=1).any():
            return X
    raise AssertionError("no inputs clear of the kinks")


def _with(net: Network, weights: Any = None, biases: Any = None) -> Network:
    return Network.from_arrays(net.inputs, net.outputs, net.node_ids, net.activations,
                               net.biases if biases is None else biases, net.src, net.dst,
                               net.weights if weights is None else weights)


@pytest.mark.parametrize("act", ALL_ACTIVATIONS)
def test_output_mode_matches_finite_differences_of_the_engine(act: str) -> None:
    data = _net(act)
    net = Network.from_dict(data)
    X = _inputs_clear_of_kinks(data)
    res = edgegrad.gradients(net, X)
    fd_w = numeric_gradient(lambda w: edgegrad.gradients(_with(net, weights=w), X).outputs, net.weights)
    fd_b = numeric_gradient(lambda b: edgegrad.gradients(_with(net, biases=b), X).outputs, net.biases)
    np.testing.assert_allclose(res.edge_grads, fd_w.transpose(1, 2, 0), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(res.deltas, fd_b.transpose(1, 2, 0), rtol=1e-6, atol=1e-8)
    # the activation is live: its node's delta is not identically zero
    assert np.abs(res.deltas[:, :, 1]).max() > 1e-3


@pytest.mark.parametrize("act", ALL_ACTIVATIONS)
def test_agrees_with_reference_and_forward_values(act: str) -> None:
    data = _net(act)
    net = Network.from_dict(data)
    X = np.random.default_rng(3).uniform(-2.0, 2.0, size=(5, 2))
    assert_agrees(edgegrad.gradients(net, X), reference_gradients(data, X))
    nv = node_values(net, X)
    z_ref, o_ref = reference_forward(data, X)
    np.testing.assert_allclose(nv.z, z_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(nv.o, o_ref, rtol=1e-12, atol=1e-14)
    fprime = [[activation_derivative(a, z) for a, z in zip(net.activations, row)] for row in z_ref]
    np.testing.assert_allclose(nv.fprime, fprime, rtol=1e-12, atol=1e-14)


# f(z) and f'(z) written out from the contract's table at a few points, through the engine
_TABLE = {
    "identity": (lambda z: z, lambda z: 1.0),
    "sigmoid": (lambda z: 1 / (1 + math.exp(-z)), lambda z: math.exp(-z) / (1 + math.exp(-z)) ** 2),
    "tanh": (math.tanh, lambda z: 1 / math.cosh(z) ** 2),
    "relu": (lambda z: max(0.0, z), lambda z: float(z > 0)),
    "leaky_relu": (lambda z: z if z > 0 else 0.01 * z, lambda z: 1.0 if z > 0 else 0.01),
    "elu": (lambda z: z if z > 0 else math.exp(z) - 1, lambda z: 1.0 if z > 0 else math.exp(z)),
    "softplus": (lambda z: math.log(1 + math.exp(z)), lambda z: 1 / (1 + math.exp(-z))),
    "gelu": (lambda z: z * 0.5 * (1 + math.erf(z / math.sqrt(2))),
             lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2))) + z * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)),
    "silu": (lambda z: z / (1 + math.exp(-z)),
             lambda z: (1 / (1 + math.exp(-z))) * (1 + z * (1 - 1 / (1 + math.exp(-z))))),
    "sin": (math.sin, math.cos),
    "gauss": (lambda z: math.exp(-z * z), lambda z: -2 * z * math.exp(-z * z)),
    "abs": (abs, lambda z: (z > 0) - (z < 0)),
}


@pytest.mark.parametrize("act", ALL_ACTIVATIONS)
@pytest.mark.parametrize("z", [-1.7, -0.3, 0.0, 0.45, 2.2])
def test_single_node_value_and_derivative(act: str, z: float) -> None:
    # y = f(z) with z = bias exactly (a bias-only output): outputs = f(z), deltas = f'(z)
    net = Network.from_dict({"inputs": ["x"], "outputs": ["y"],
                             "nodes": [{"id": "y", "activation": act, "bias": z}], "edges": []})
    res = edgegrad.gradients(net, [[0.0]])
    f, fprime = _TABLE[act]
    assert res.outputs[0, 0] == pytest.approx(f(z), rel=1e-13, abs=1e-15)
    assert res.deltas[0, 0, 0] == pytest.approx(fprime(z), rel=1e-13, abs=1e-15)
    assert res.edge_grads.shape == (1, 1, 0)
    assert activation_value(act, z) == pytest.approx(f(z), rel=1e-13, abs=1e-15)


def test_gelu_is_the_erf_form_not_the_tanh_approximation() -> None:
    net = Network.from_dict({"inputs": ["x"], "outputs": ["y"],
                             "nodes": [{"id": "y", "activation": "gelu"}],
                             "edges": [{"src": "x", "dst": "y", "weight": 1.0}]})
    y = edgegrad.gradients(net, [[1.0]]).outputs[0, 0]
    tanh_form = 0.5 * (1 + math.tanh(math.sqrt(2 / math.pi) * (1 + 0.044715)))
    assert y == pytest.approx(0.8413447460685429, rel=1e-14)
    assert abs(y - tanh_form) > 1e-4


@pytest.mark.parametrize("act, at_zero, below_zero", [
    ("relu", 0.0, 0.0), ("leaky_relu", 0.01, 0.01), ("elu", 1.0, math.exp(-0.5)), ("abs", 0.0, -1.0),
])
def test_kink_conventions_on_a_hidden_node(act: str, at_zero: float, below_zero: float) -> None:
    # h = f(x1 - x2) sits exactly on the kink when x1 == x2; y = 2h + 3x1 (identity)
    net = Network.from_dict({
        "inputs": ["x1", "x2"], "outputs": ["y"],
        "nodes": [{"id": "h", "activation": act}, {"id": "y"}],
        "edges": [{"src": "x1", "dst": "h", "weight": 1.0}, {"src": "x2", "dst": "h", "weight": -1.0},
                  {"src": "h", "dst": "y", "weight": 2.0}, {"src": "x1", "dst": "y", "weight": 3.0}]})
    res = edgegrad.gradients(net, [[0.7, 0.7], [0.2, 0.7]])
    # δ(h) = f'(z_h) · 2 ; ∂y/∂w(x1,h) = δ(h) · x1
    assert res.deltas[0, 0, 0] == pytest.approx(2 * at_zero, rel=1e-15, abs=0)
    assert res.deltas[1, 0, 0] == pytest.approx(2 * below_zero, rel=1e-15, abs=0)
    assert res.edge_grads[0, 0, 0] == pytest.approx(2 * at_zero * 0.7, rel=1e-15, abs=0)
    assert res.edge_grads[0, 0, 3] == 0.7  # x1 -> y: δ(y) · x1 = 0.7


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("act", ALL_ACTIVATIONS)
def test_the_one_pass_form_matches_value_then_derivative(act: str, dtype: str) -> None:
    """``fused`` (what the engine runs) against ``forward`` then ``derivative``, at ordinary and extreme z."""
    from edgegrad.model.activations import ACTIVATIONS

    extreme = [0.0, -0.0, 1e-8, -1e-8, 40.5, -40.5, 88.8, -104.0, 1e30, -1e30]
    if dtype == "float64":
        extreme += [1e-320, -1e-320, 709.0, -709.0, 745.2, -745.2, 1e300, -1e300]
    z = np.concatenate([np.random.default_rng(0).normal(scale=4.0, size=500), extreme]).astype(dtype)
    a = ACTIVATIONS[act]
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        want_o = a.forward(z)
        want_d = a.derivative(z, want_o)
        o, d = np.full_like(z, np.nan), np.full_like(z, np.nan)
        a.fused(z, o, d)
    assert o.dtype == d.dtype == z.dtype
    tiny = np.finfo(z.dtype).tiny
    rtol = 1e-15 if dtype == "float64" else 1e-6
    np.testing.assert_allclose(o, want_o, rtol=rtol, atol=tiny)
    # gelu' crosses 0 near z = -0.75 (cancellation) and softplus' keeps subnormals expit flushes: compare to scale
    np.testing.assert_allclose(d, want_d, rtol=rtol, atol=(4e-7 if dtype == "float32" else 1e-300))
