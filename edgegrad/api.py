"""``edgegrad.gradients``: the in-process entry point over the plan and the engine."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import engine
from .batch import check_options
from .errors import InvalidInput
from .losses import loss_and_grad
from .network import Network
from .overflow import overflow_message
from .plan import Plan, get_plan
from .result import GradientResult

__all__ = ["gradients", "node_values", "partial_gradients"]


def gradients(net: Network, inputs: Any, targets: Any = None, loss: str | None = None,
              reduction: str = "mean", per_example: bool = False, dtype: str = "float64") -> GradientResult:
    """Outputs and exact derivatives of ``net`` for a batch, in output mode or loss mode (see the contract)."""
    if not isinstance(net, Network):
        raise TypeError(f"net must be an edgegrad.Network, got {type(net).__name__}")
    x, t = check_options(net, inputs, targets, loss, reduction, dtype, per_example)
    plan = get_plan(net, dtype)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is found and named below
        run, result = _compute(net, plan, x, t, loss, reduction, per_example)
    if not result.is_finite():
        raise InvalidInput(overflow_message(net, plan, run, result))
    return result


def _compute(net: Network, plan: Plan, x: np.ndarray, t: np.ndarray | None, loss: str | None,
             reduction: str, per_example: bool) -> tuple[engine.Pass, GradientResult]:
    batch, n_out = x.shape[0], net.n_outputs
    run, _ = engine.forward(plan, x.astype(plan.dtype, copy=False), n_outputs=None if loss else n_out)
    outputs = run.acts[plan.n_inputs + plan.output_rows].T.copy()
    file_rows = plan.node_row

    if loss is None:
        engine.backward(plan, run, None)
        edge_grads = np.empty((batch, n_out, net.n_edges), dtype=plan.dtype)
        engine.per_example_edge_grads(plan, run, edge_grads)
        deltas = np.ascontiguousarray(run.deltas[file_rows].transpose(2, 1, 0))
        return run, GradientResult(outputs, None, edge_grads, deltas)

    value, d_out = loss_and_grad(loss, reduction, outputs, t)
    engine.backward(plan, run, d_out.T.astype(plan.dtype))
    if per_example:
        edge_grads = np.empty((batch, net.n_edges), dtype=plan.dtype)
        engine.per_example_edge_grads(plan, run, edge_grads)
        deltas = np.ascontiguousarray(run.deltas[file_rows].T)
    else:
        edge_grads = np.empty(net.n_edges, dtype=plan.dtype)
        edge_grads[plan.edge_file] = engine.summed_edge_grads(plan, run)
        deltas = run.deltas.sum(axis=1)[file_rows]
    return run, GradientResult(outputs, value, edge_grads, deltas)


def node_values(net: Network, inputs: Any, dtype: str = "float64") -> engine.NodeValues:
    """z, o and f'(z) of every node for a batch, in file order (for explanations and checks)."""
    x, _ = check_options(net, inputs, None, None, "mean", dtype, False)
    plan = get_plan(net, dtype)
    with np.errstate(over="ignore", invalid="ignore"):  # explanations show inf rather than warn
        return engine.plan_node_values(plan, x.astype(plan.dtype, copy=False))


def partial_gradients(net: Network, inputs: Any, targets: Any = None, loss: str | None = None,
                      reduction: str = "mean", per_example: bool = False, dtype: str = "float64", *,
                      total_rows: int, row_offset: int = 0) -> GradientResult:
    """These rows' share of the gradients of a batch of ``total_rows`` rows (TEMPORARY: replaced by the engine's)."""
    from .losses import LOSSES

    if len(inputs) == total_rows:
        return gradients(net, inputs, targets, loss, reduction, per_example, dtype)
    res = gradients(net, inputs, targets, loss, "sum" if loss else "mean", per_example, dtype)
    if loss and reduction == "mean":
        scale = 1.0 / LOSSES[loss].mean_count(np.empty((total_rows, net.n_outputs)))
        res = GradientResult(res.outputs, res.loss * scale, res.edge_grads * scale, res.deltas * scale)
    return res
