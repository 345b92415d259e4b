"""Numerical safety: huge finite values give no warnings, no NaN and no inf (contract section 3)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from dags import ALL_ACTIVATIONS, random_network_dict, random_targets
from reference import assert_agrees, reference_gradients

import edgegrad
from edgegrad import InvalidInput, Network

pytestmark = pytest.mark.usefixtures("each_kernel")  # every test on the numpy and the compiled kernels

HUGE = [1e300, -1e300, 1e30, -1e30, 745.2, -745.2, 710.0, -710.0, 40.5, -40.5, 1e-320]


@contextmanager
def no_warnings() -> Iterator[None]:
    """Fail on any warning (numpy's floating-point RuntimeWarnings included), from any thread."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    assert not caught, [f"{w.category.__name__}: {w.message}" for w in caught]


def _all_finite(res: Any) -> bool:
    fields = [res.outputs, res.edge_grads, res.deltas] + ([res.loss] if res.loss is not None else [])
    return all(np.isfinite(np.asarray(f)).all() for f in fields)


def _single(act: str, bias: float) -> Network:
    return Network.from_dict({"inputs": ["x"], "outputs": ["y"],
                              "nodes": [{"id": "h", "activation": act, "bias": bias}, {"id": "y", "activation": act}],
                              "edges": [{"src": "h", "dst": "y", "weight": 1.0},
                                        {"src": "x", "dst": "h", "weight": 1.0}]})


@pytest.mark.parametrize("act", ALL_ACTIVATIONS)
def test_every_activation_at_huge_pre_activations(act: str) -> None:
    for z in HUGE:
        net = _single(act, z)
        with no_warnings():
            res = edgegrad.gradients(net, [[0.0], [-z]])
        assert _all_finite(res), (act, z, res)
        if act != "sin" or abs(z) < 1e6:  # libm and numpy may reduce sin(1e300) differently
            assert_agrees(res, reference_gradients(net, [[0.0], [-z]]))


@pytest.mark.parametrize("act", ALL_ACTIVATIONS)
def test_float32_at_large_values_within_its_range(act: str) -> None:
    for z in (1e30, -1e30, 100.0, -100.0, 88.8, -104.0):
        with no_warnings():
            res = edgegrad.gradients(_single(act, z), [[0.0]], dtype="float32")
        assert _all_finite(res), (act, z, res)


@pytest.mark.parametrize("loss", [None, "mse", "bce", "softmax_ce"])
def test_random_networks_with_huge_inputs(loss: str | None) -> None:
    out_acts = ("sigmoid", "tanh") if loss in ("mse", "bce") else None
    out_acts = ("sigmoid",) if loss == "bce" else out_acts
    for seed in range(12):
        data = random_network_dict(seed, n_nodes=9, n_outputs=2, output_activations=out_acts)
        net = Network.from_dict(data)
        rng = np.random.default_rng(seed)
        X = rng.choice([-1.0, 1.0], size=(4, net.n_inputs)) * 10.0 ** rng.uniform(0, 150, size=(4, net.n_inputs))
        T = random_targets(seed, loss, 4, net.n_outputs) if loss else None
        for per_example in ([False, True] if loss else [False]):
            with no_warnings():
                res = edgegrad.gradients(net, X, targets=T, loss=loss, per_example=per_example)
            assert _all_finite(res), (seed, loss)


def test_bce_on_saturated_sigmoid_outputs_uses_the_clamped_log() -> None:
    # sigmoid(±50) rounds to exactly 1.0 / ~2e-22; with t on the wrong side each log is clamped at −100
    net = Network.from_dict({"inputs": ["x"], "outputs": ["y"],
                             "nodes": [{"id": "y", "activation": "sigmoid"}],
                             "edges": [{"src": "x", "dst": "y", "weight": 1.0}]})
    X, T = [[50.0], [-800.0], [0.0]], [[0.0], [1.0], [1.0]]
    with no_warnings():
        res = edgegrad.gradients(net, X, targets=T, loss="bce", reduction="sum")
    # row 0: y = 1.0 exactly, ln(1 − y) clamped: 100; row 1: y = 0 exactly (underflow): 100; row 2: ln 2
    assert res.loss == pytest.approx(200.0 + np.log(2.0), rel=1e-14)
    assert _all_finite(res)
    assert_agrees(res, reference_gradients(net, X, T, "bce", "sum"))


def test_softmax_ce_with_enormous_logits() -> None:
    net = Network.from_dict({"inputs": ["a", "b"], "outputs": ["p", "q"], "nodes": [{"id": "p"}, {"id": "q"}],
                             "edges": [{"src": "a", "dst": "p", "weight": 1.0}, {"src": "b", "dst": "q", "weight": 1.0}]})
    X, T = [[1e300, -1e300], [-1e300, 1e300], [800.0, -800.0]], [[1.0, 0.0], [1.0, 0.0], [0.5, 0.5]]
    with no_warnings():
        res = edgegrad.gradients(net, X, targets=T, loss="softmax_ce", reduction="sum")
    assert _all_finite(res)
    # row 0 is right with certainty (0), row 1 wrong by 2e300, row 2 half-wrong by 1600 · 0.5
    assert res.loss == pytest.approx(2e300 + 800.0, rel=1e-12)
    np.testing.assert_allclose(res.deltas, [0.0 - 1.0 + 0.5, 0.0 + 1.0 - 0.5], atol=1e-15)


@pytest.mark.parametrize("where, place", [("bias", "nodes[0].bias"), ("weight", "edges[1].weight"),
                                          ("input", "inputs[0][0]"), ("target", "targets[0][0]")])
def test_float32_refuses_values_beyond_its_range(where: str, place: str) -> None:
    # finite in float64, but a cast to float32 would turn it into inf (and inf·0 into NaN)
    huge = -1e300
    net = _single("gelu", huge if where == "bias" else 0.0)
    if where == "weight":  # edges: [h -> y, x -> h]
        net = Network.from_arrays(net.inputs, net.outputs, net.node_ids, net.activations, net.biases,
                                  net.src, net.dst, [1.0, huge])
    x = [[huge if where == "input" else 0.0]]
    t = [[huge if where == "target" else 0.0]]
    with no_warnings(), pytest.raises(InvalidInput) as info:
        edgegrad.gradients(net, x, targets=t, loss="mse", dtype="float32")
    assert str(info.value).startswith(f"{place}: "), str(info.value)
    assert "float32" in str(info.value)
    with no_warnings():  # the same values are fine in float64
        assert _all_finite(edgegrad.gradients(net, x))


@pytest.mark.parametrize("values, finite", [([1.0, 2.0], True), ([1.0, np.inf], False), ([np.nan, 1.0], False),
                                            ([np.inf, -np.inf], False), ([1e308, 1e308], True), ([], True)])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_finiteness_check_is_exact_even_when_the_sum_overflows(values: list, finite: bool, dtype: str) -> None:
    """The one-pass sum check falls back to an exact one: a sum past the range is not an infinity."""
    from edgegrad.engine.result import GradientResult

    big = np.array([3e38 if v == 1e308 and dtype == "float32" else v for v in values], dtype=dtype)
    result = GradientResult(np.zeros((1, 1)), None, big, np.zeros(1))
    assert result.is_finite() == finite
