"""The losses of the contract: value and ∂L/∂y for a batch of outputs."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from scipy.special import log_softmax, softmax

from ..errors import InvalidInput

__all__ = ["Loss", "LOSSES", "REDUCTIONS", "loss_and_grad", "loss_scale"]

REDUCTIONS = ("mean", "sum")
_LOG_FLOOR = -100.0


class Loss(NamedTuple):
    """A loss: ``value_and_grad(y, t, scale) -> (scale·Σ terms, scale·∂Σ/∂y)`` and what ``mean`` divides by per row.

    The scale is applied before summing, so a mean that fits in float64 is never lost to an
    intermediate sum that does not.
    """

    name: str
    value_and_grad: Callable[[np.ndarray, np.ndarray, float], tuple[float, np.ndarray]]
    count_per_row: Callable[[int], int]   #: n_outputs -> terms per row the mean divides by


def _mse(y: np.ndarray, t: np.ndarray, scale: float) -> tuple[float, np.ndarray]:
    diff = y - t
    scaled = diff * math.sqrt(scale)
    with np.errstate(over="ignore"):  # beyond float64 even after scaling: inf, reported by gradients()
        return float(np.sum(scaled * scaled)), (2.0 * scale) * diff


def _clamped_log(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ln x clamped below at -100, and its derivative (0 where the clamp holds)."""
    with np.errstate(divide="ignore"):
        log = np.log(x)
    live = log > _LOG_FLOOR
    safe = np.where(live, x, 1.0)
    return np.where(live, log, _LOG_FLOOR), np.where(live, 1.0 / safe, 0.0)


def _bce(y: np.ndarray, t: np.ndarray, scale: float) -> tuple[float, np.ndarray]:
    log_y, dlog_y = _clamped_log(y)
    log_1y, dlog_1y = _clamped_log(1.0 - y)
    value = -float(np.sum(scale * (t * log_y + (1.0 - t) * log_1y)))
    return value, -scale * (t * dlog_y - (1.0 - t) * dlog_1y)


def _softmax_ce(y: np.ndarray, t: np.ndarray, scale: float) -> tuple[float, np.ndarray]:
    value = -float(np.sum((scale * t) * log_softmax(y, axis=1)))
    return value, scale * (softmax(y, axis=1) * t.sum(axis=1, keepdims=True) - t)


LOSSES: dict[str, Loss] = {
    "mse": Loss("mse", _mse, lambda k: k),
    "bce": Loss("bce", _bce, lambda k: k),
    "softmax_ce": Loss("softmax_ce", _softmax_ce, lambda k: 1),
}


def loss_and_grad(name: str, reduction: str, y: np.ndarray, t: np.ndarray, total_rows: int | None = None,
                  row_offset: int = 0) -> tuple[float, np.ndarray]:
    """L and ∂L/∂y (B×K, float64) for outputs ``y`` and targets ``t``.

    ``y`` may be rows ``row_offset…`` of a batch of ``total_rows`` rows (default: all of it): the mean
    then divides by the whole batch's count, so the parts of consecutive row ranges add up to the
    batch's loss and gradient, and messages name the batch's rows.
    """
    loss = LOSSES[name]
    y64 = y.astype(np.float64, copy=False)
    if name == "bce":
        bad = np.argwhere((y64 < 0) | (y64 > 1))
        if bad.size:
            b, k = bad[0]
            raise InvalidInput(f"outputs[{row_offset + b}][{k}]: bce needs outputs in [0, 1], got {float(y64[b, k])}")
    rows = y64.shape[0] if total_rows is None else total_rows
    return loss.value_and_grad(y64, t, loss_scale(name, reduction, y64.shape[1], rows))


def loss_scale(name: str, reduction: str, n_outputs: int, total_rows: int) -> float:
    """The factor by which ``reduction`` scales the summed loss: 1/(B·K) for mse and bce, 1/B for
    softmax_ce under "mean"; 1 under "sum"."""
    return 1.0 / (LOSSES[name].count_per_row(n_outputs) * total_rows) if reduction == "mean" else 1.0
