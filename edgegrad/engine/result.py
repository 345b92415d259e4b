"""The result of a gradient job, the same object in-process and through the service."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["GradientResult"]


def _all_finite(a: np.ndarray) -> bool:
    """Whether every element is finite: an inf or NaN anywhere makes the sum inf or NaN, so a finite
    sum settles it in one pass without a mask; a non-finite sum (maybe only overflow) is checked exactly."""
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.add.reduce(a, axis=None)):
            return True
    return bool(np.isfinite(a).all())


@dataclass
class GradientResult:
    """Outputs, loss and derivatives laid out in the network's file order (see the contract)."""

    outputs: np.ndarray          #: B×K
    loss: float | None           #: L in loss mode, None in output mode
    edge_grads: np.ndarray       #: B×K×E (output mode), E or B×E (loss mode, per_example)
    deltas: np.ndarray           #: B×K×N (output mode), N or B×N (loss mode, per_example)
    norms: np.ndarray | None = None  #: B: each example's gradient norm (with ``norms`` or ``clip_norm``), else None

    def is_finite(self) -> bool:
        """Whether every number (and the loss) is finite."""
        return ((self.loss is None or bool(np.isfinite(self.loss)))
                and all(_all_finite(getattr(self, f)) for f in ("outputs", "edge_grads", "deltas"))
                and (self.norms is None or _all_finite(self.norms)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GradientResult):
            return NotImplemented
        return (self.loss == other.loss and (self.norms is None) == (other.norms is None)
                and all(np.array_equal(getattr(self, f), getattr(other, f))
                        for f in ("outputs", "edge_grads", "deltas", "norms") if getattr(self, f) is not None))
