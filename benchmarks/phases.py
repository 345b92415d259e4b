"""Where a loss-mode ``gradients`` call spends its time: the engine's phases timed one by one.

This mirrors ``edgegrad.engine.api.gradients`` (mse loss, summed gradients) through the engine's internal
functions, so it may need adapting when those change; ``engine.py --phases`` reports failures
instead of crashing.
"""

from __future__ import annotations

import time

import numpy as np

from edgegrad import Network
from edgegrad.engine import passes
from edgegrad.engine.losses import loss_and_grad
from edgegrad.engine.plan import get_plan

__all__ = ["PHASES", "time_phases"]

PHASES = ("forward", "loss", "backward (δ)", "edge gradients", "deltas + file order")


def time_phases(net: Network, X: np.ndarray, T: np.ndarray, dtype: str = "float64",
                repeat: int = 3) -> dict[str, float]:
    """Median seconds of each phase over ``repeat`` runs (the plan is built first, untimed)."""
    plan = get_plan(net, dtype)
    x = np.asarray(X, dtype=plan.dtype)
    samples: dict[str, list[float]] = {name: [] for name in PHASES}
    for _ in range(repeat):
        marks = [time.perf_counter()]
        buffers, _ = passes.forward(plan, x)
        marks.append(time.perf_counter())
        outputs = buffers.acts[plan.n_inputs + plan.output_rows].T.copy()
        _, d_out = loss_and_grad("mse", "mean", outputs, T)
        marks.append(time.perf_counter())
        passes.backward(plan, buffers, d_out.T.astype(plan.dtype))
        marks.append(time.perf_counter())
        edge_grads = np.empty(net.n_edges, dtype=plan.dtype)
        passes.summed_edge_grads(plan, buffers, edge_grads)
        marks.append(time.perf_counter())
        buffers.deltas.sum(axis=1)[plan.node_row]
        marks.append(time.perf_counter())
        for name, a, b in zip(PHASES, marks[:-1], marks[1:]):
            samples[name].append(b - a)
    return {name: float(np.median(values)) for name, values in samples.items()}
