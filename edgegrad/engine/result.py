"""The result of a gradient job, the same object in-process and through the service."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["GradientResult"]


@dataclass
class GradientResult:
    """Outputs, loss and derivatives laid out in the network's file order (see the contract)."""

    outputs: np.ndarray          #: B×K
    loss: float | None           #: L in loss mode, None in output mode
    edge_grads: np.ndarray       #: B×K×E (output mode), E or B×E (loss mode, per_example)
    deltas: np.ndarray           #: B×K×N (output mode), N or B×N (loss mode, per_example)

    def is_finite(self) -> bool:
        """Whether every number (and the loss) is finite."""
        return ((self.loss is None or bool(np.isfinite(self.loss)))
                and all(bool(np.isfinite(getattr(self, f)).all()) for f in ("outputs", "edge_grads", "deltas")))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GradientResult):
            return NotImplemented
        return (self.loss == other.loss
                and all(np.array_equal(getattr(self, f), getattr(other, f))
                        for f in ("outputs", "edge_grads", "deltas")))
