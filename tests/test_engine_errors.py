"""Bad requests through ``edgegrad.gradients``: InvalidInput, and a message that names the place."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest

import edgegrad
from edgegrad import InvalidInput, Network

pytestmark = pytest.mark.usefixtures("each_kernel")  # every test on the numpy and the compiled kernels

NET = Network.from_dict({
    "inputs": ["x1", "x2"], "outputs": ["y", "p"],
    "nodes": [{"id": "h", "activation": "tanh"}, {"id": "y"}, {"id": "p", "activation": "sigmoid"}],
    "edges": [{"src": "x1", "dst": "h", "weight": 0.5}, {"src": "x2", "dst": "h", "weight": -1.0},
              {"src": "h", "dst": "y", "weight": 2.0}, {"src": "h", "dst": "p", "weight": 1.0}],
})
X = np.array([[0.1, 0.2], [0.3, -0.4], [1.0, 2.0]])
T = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]])


def _raises(pattern: str, *args: Any, **kwargs: Any) -> InvalidInput:
    """gradients(NET, ...) raises InvalidInput whose message matches ``pattern`` from its start."""
    with pytest.raises(InvalidInput) as info:
        edgegrad.gradients(NET, *args, **kwargs)
    message = str(info.value)
    assert re.match(pattern, message), message
    assert info.value.code == "INVALID_ARGUMENT"
    assert "\n" not in message and "Traceback" not in message
    return info.value


@pytest.mark.parametrize("inputs, shape", [
    (np.zeros((3, 5)), "(3, 5)"),
    (np.zeros((3, 1)), "(3, 1)"),
    ([0.1, 0.2], "(2,)"),
    (np.zeros((2, 2, 1)), "(2, 2, 1)"),
    (0.5, "()"),
])
def test_inputs_of_the_wrong_shape(inputs: Any, shape: str) -> None:
    err = _raises(r"inputs: expected shape \(B, 2\)", inputs)
    assert f"got {shape}" in str(err)
    assert err.field == "inputs"


def test_inputs_that_are_not_numbers() -> None:
    _raises(r"inputs\[0\]\[1\]: expected a number, got 'a lot'$", [[0.1, "a lot"], [0.2, 0.3]])
    _raises(r"inputs\[1\]\[0\]: expected a number, got '1.5'$", [[0.1, 0.2], ["1.5", 0.3]])
    _raises(r"targets\[2\]\[0\]: expected a number, got None$", X, targets=[[0.0, 1.0]] * 2 + [[None, 0.0]], loss="mse")
    _raises(r"inputs: expected", [[0.1, 0.2], [0.3]])  # ragged rows
    _raises(r"inputs(\[0\]\[1\])?: ", [[0.1, None]])  # null: the array or the cell is named


def test_an_empty_batch() -> None:
    _raises(r"inputs: .*empty", np.zeros((0, 2)))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_inputs_name_the_cell(bad: float) -> None:
    x = X.copy()
    x[2, 1] = bad
    err = _raises(r"inputs\[2\]\[1\]: must be finite", x)
    assert err.field == "inputs[2][1]"


@pytest.mark.parametrize("bad", [math.nan, math.inf])
@pytest.mark.parametrize("loss", ["mse", "bce", "softmax_ce"])
def test_non_finite_targets_name_the_cell(bad: float, loss: str) -> None:
    t = T.copy()
    t[1, 0] = bad
    _raises(r"targets\[1\]\[0\]: must be finite", X, targets=t, loss=loss)


def test_targets_of_the_wrong_shape() -> None:
    err = _raises(r"targets: expected shape \(B, 2\)", X, targets=np.zeros((3, 3)), loss="mse")
    assert "got (3, 3)" in str(err)
    _raises(r"targets: expected shape \(B, 2\)", X, targets=[0.0, 1.0, 0.0], loss="mse")
    _raises(r"targets: .*2 rows.*3", X, targets=T[:2], loss="mse")
    _raises(r"targets: .*4 rows.*3", X, targets=np.zeros((4, 2)), loss="mse")


def test_unknown_loss_reduction_and_dtype() -> None:
    _raises(r"loss: unknown loss 'foo'", X, targets=T, loss="foo")
    _raises(r"loss: unknown loss 'MSE'", X, targets=T, loss="MSE")
    _raises(r"reduction: unknown reduction 'avg'", X, targets=T, loss="mse", reduction="avg")
    _raises(r"dtype: unknown dtype 'float16'", X, dtype="float16")


def test_targets_without_loss_and_loss_without_targets() -> None:
    _raises(r"targets: .*without a loss", X, targets=T)
    _raises(r"targets: .*'mse' needs targets", X, loss="mse")
    _raises(r"targets: .*'softmax_ce' needs targets", X, loss="softmax_ce", per_example=True)


@pytest.mark.parametrize("loss", ["bce", "softmax_ce"])
@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_probability_losses_need_targets_in_0_1(loss: str, bad: float) -> None:
    t = T.copy()
    t[2, 1] = bad
    err = _raises(r"targets\[2\]\[1\]: ", X, targets=t, loss=loss)
    assert "[0, 1]" in str(err) and loss in str(err)
    edgegrad.gradients(NET, X, targets=t, loss="mse")  # any real target is fine for mse


def test_bce_needs_outputs_in_0_1() -> None:
    # output y is identity: y = 2·tanh(z_h); rows 0, 1 have z_h = 0.3, 0.2 (y in [0, 1]),
    # row 2 has z_h = 0.5 − 2 = −1.5, so y = 2·tanh(−1.5) < 0
    err = _raises(r"outputs\[2\]\[0\]: ", [[1.0, 0.2], [0.4, 0.0], [1.0, 2.0]], targets=T, loss="bce")
    assert "bce" in str(err) and "[0, 1]" in str(err)


def test_bce_output_message_shows_a_plain_number() -> None:
    err = _raises(r"outputs\[2\]\[0\]: ", [[1.0, 0.2], [0.4, 0.0], [1.0, 2.0]], targets=T, loss="bce")
    assert re.search(r"got -1\.8\d*$", str(err)), str(err)  # 2·tanh(−1.5) = −1.81...


def test_the_boundaries_are_accepted() -> None:
    # targets exactly 0 and 1 are legal for bce and softmax_ce; a one-row batch is legal
    for loss in ("bce", "softmax_ce"):
        net = Network.from_dict({"inputs": ["x"], "outputs": ["a", "b"],
                                 "nodes": [{"id": "a", "activation": "sigmoid"}, {"id": "b", "activation": "sigmoid"}],
                                 "edges": [{"src": "x", "dst": "a", "weight": 1.0}]})
        res = edgegrad.gradients(net, [[0.3]], targets=[[0.0, 1.0]], loss=loss)
        assert np.isfinite(res.loss)


def test_errors_leave_the_engine_usable() -> None:
    for bad in ({"inputs": np.zeros((3, 5))}, {"inputs": X, "loss": "foo", "targets": T}):
        with pytest.raises(InvalidInput):
            edgegrad.gradients(NET, bad.pop("inputs"), **bad)
    assert edgegrad.gradients(NET, X).edge_grads.shape == (3, 2, 4)


def test_a_network_must_be_a_network() -> None:
    with pytest.raises((TypeError, InvalidInput)):
        edgegrad.gradients({"inputs": ["x"]}, [[1.0]])


def test_options_that_need_a_loss_are_refused_without_one() -> None:
    _raises(r"per_example: only meaningful with a loss", X, per_example=True)
    _raises(r"reduction: 'sum' is only meaningful with a loss", X, reduction="sum")


OVERFLOW = Network.from_dict({
    "inputs": ["x"], "outputs": ["y"],
    "nodes": [{"id": "h", "activation": "tanh"}, {"id": "y"}, {"id": "big"}, {"id": "tiny"}],
    "edges": [{"src": "x", "dst": "h", "weight": 1.0}, {"src": "h", "dst": "y", "weight": 1.0},
              {"src": "x", "dst": "big", "weight": 1e10}, {"src": "big", "dst": "y", "weight": 1.0},
              {"src": "x", "dst": "tiny", "weight": 1e-200}, {"src": "tiny", "dst": "y", "weight": 1e200}],
})


@pytest.mark.filterwarnings("error")
def test_overflow_inside_the_computation_names_where_it_started() -> None:
    """Finite inputs and weights can still overflow; that is bad input, named, and never a warning."""
    with pytest.raises(InvalidInput, match=r"^nodes\[2\]: its value overflows float64 at inputs row 1 "
                                           r"\(node 'big'"):
        edgegrad.gradients(OVERFLOW, [[1.0], [1e300]])
    with pytest.raises(InvalidInput, match=r"^loss: inf \(the loss overflows float64"):
        edgegrad.gradients(OVERFLOW, [[1e200]], targets=[[0.0]], loss="mse")
    with pytest.raises(InvalidInput, match=r"^edges\[4\]: the derivative for x -> tiny overflows float64"):
        edgegrad.gradients(OVERFLOW, [[1e200]])
    single = Network.from_dict({"inputs": ["x"], "outputs": ["y"], "nodes": [{"id": "y"}],
                                "edges": [{"src": "x", "dst": "y", "weight": 1e10}]})
    with pytest.raises(InvalidInput, match=r"^nodes\[0\]: its value overflows float32 at inputs row 0"):
        edgegrad.gradients(single, [[1e30]], dtype="float32")
    assert edgegrad.gradients(OVERFLOW, [[1.0]]).is_finite()


@pytest.mark.filterwarnings("error")
def test_overflow_only_in_the_batch_sum_and_a_mean_that_fits() -> None:
    chain = Network.from_dict({"inputs": ["x"], "outputs": ["y"], "nodes": [{"id": "h"}, {"id": "y"}],
                               "edges": [{"src": "x", "dst": "h", "weight": 1.0},
                                         {"src": "h", "dst": "y", "weight": 1e308}]})
    with pytest.raises(InvalidInput, match=r"^nodes\[0\]: its δ summed over the batch overflows float64"):
        edgegrad.gradients(chain, [[0.0], [0.0]], targets=[[-0.45], [-0.45]], loss="mse", reduction="sum")
    biased = Network.from_dict({"inputs": ["x"], "outputs": ["y"], "nodes": [{"id": "y", "bias": 1.2e154}],
                                "edges": [{"src": "x", "dst": "y", "weight": 1.0}]})
    res = edgegrad.gradients(biased, [[1.0]] * 4, targets=[[0.0]] * 4, loss="mse")  # Σ (y-t)² overflows, the mean fits
    assert res.loss == pytest.approx(1.2e154 ** 2, rel=1e-12)
    assert res.edge_grads[0] == pytest.approx(2 * 1.2e154, rel=1e-12)
