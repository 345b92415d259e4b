"""The losses of the contract: value and ∂L/∂y for a batch of outputs."""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import numpy as np
from scipy.special import log_softmax, softmax

from .errors import InvalidInput

__all__ = ["Loss", "LOSSES", "REDUCTIONS", "loss_and_grad"]

REDUCTIONS = ("mean", "sum")
_LOG_FLOOR = -100.0


class Loss(NamedTuple):
    """A loss: ``value_and_grad(y, t, scale) -> (scale·Σ terms, scale·∂Σ/∂y)`` and the count ``mean`` divides by.

    The scale is applied before summing, so a mean that fits in float64 is never lost to an
    intermediate sum that does not.
    """

    name: str
    value_and_grad: Callable[[np.ndarray, np.ndarray, float], tuple[float, np.ndarray]]
    mean_count: Callable[[np.ndarray], int]


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
    bad = np.argwhere((y < 0) | (y > 1))
    if bad.size:
        b, k = bad[0]
        raise InvalidInput(f"outputs[{b}][{k}]: bce needs outputs in [0, 1], got {float(y[b, k])}")
    log_y, dlog_y = _clamped_log(y)
    log_1y, dlog_1y = _clamped_log(1.0 - y)
    value = -float(np.sum(scale * (t * log_y + (1.0 - t) * log_1y)))
    return value, -scale * (t * dlog_y - (1.0 - t) * dlog_1y)


def _softmax_ce(y: np.ndarray, t: np.ndarray, scale: float) -> tuple[float, np.ndarray]:
    value = -float(np.sum((scale * t) * log_softmax(y, axis=1)))
    return value, scale * (softmax(y, axis=1) * t.sum(axis=1, keepdims=True) - t)


LOSSES: dict[str, Loss] = {
    "mse": Loss("mse", _mse, lambda y: y.size),
    "bce": Loss("bce", _bce, lambda y: y.size),
    "softmax_ce": Loss("softmax_ce", _softmax_ce, lambda y: y.shape[0]),
}


def loss_and_grad(name: str, reduction: str, y: np.ndarray, t: np.ndarray) -> tuple[float, np.ndarray]:
    """L and ∂L/∂y (B×K, float64) for outputs ``y`` and targets ``t``."""
    loss = LOSSES[name]
    y64 = y.astype(np.float64, copy=False)
    scale = 1.0 / loss.mean_count(y64) if reduction == "mean" else 1.0
    return loss.value_and_grad(y64, t, scale)
