"""``edgegrad.gradients``: the in-process entry point over the plan and the engine.

Every call runs its rows in slabs whose engine working memory stays under ``memory.slab_budget()``,
so memory grows with the batch only by the inputs and the result. Loss-mode (summed) slabs are
folded in slab order by ``fold_partials``; per-example and output-mode slabs write their rows
straight into the result. ``partial_gradients`` is the same path for rows of a larger batch (a
shard): its parts, folded in row order, give the whole batch's result. Each call runs on one kernel
(``kernel.choose_kernel``: numpy or numba); ``_slab`` calls only its ``Kernel`` methods.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

import numpy as np

from . import passes, workspace
from .batch import check_options
from ..errors import InvalidInput
from .kernel import Kernel, choose_kernel
from .losses import loss_and_grad
from .memory import result_bytes_per_row, rows_for_budget, slab_rows, working_memory_bytes
from ..model.network import Network
from .overflow import overflow_message, result_overflow_message
from .plan import Plan, get_plan
from .result import GradientResult

__all__ = ["gradients", "partial_gradients", "fold_partials", "node_values", "working_memory_bytes",
           "result_bytes_per_row", "rows_for_budget"]


def gradients(net: Network, inputs: Any, targets: Any = None, loss: str | None = None,
              reduction: str = "mean", per_example: bool = False, dtype: str = "float64") -> GradientResult:
    """Outputs and exact derivatives of ``net`` for a batch, in output mode or loss mode (see the contract)."""
    _check_net(net)
    x, t = check_options(net, inputs, targets, loss, reduction, dtype, per_example)
    return _run(net, x, t, loss, reduction, per_example, dtype, x.shape[0], 0)


def partial_gradients(net: Network, inputs: Any, targets: Any = None, loss: str | None = None,
                      reduction: str = "mean", per_example: bool = False, dtype: str = "float64", *,
                      total_rows: int, row_offset: int = 0) -> GradientResult:
    """The share of these rows (rows ``row_offset…`` of a batch of ``total_rows``) in that batch's result.

    Outputs and per-example rows are these rows'; in loss mode the loss and the summed edge_grads
    and deltas are these rows' terms with a mean taken over ``total_rows``, so ``fold_partials`` of
    the parts of consecutive row ranges, in order, is the whole batch's result. Messages name rows
    of the whole batch.
    """
    _check_net(net)
    for name, value in (("total_rows", total_rows), ("row_offset", row_offset)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise InvalidInput(f"{name}: expected a non-negative integer, got {value!r}")
    x, t = check_options(net, inputs, targets, loss, reduction, dtype, per_example, int(row_offset))
    if row_offset + x.shape[0] > total_rows:
        raise InvalidInput(f"total_rows: {total_rows} is less than row_offset {row_offset}"
                           f" + these {x.shape[0]} rows")
    return _run(net, x, t, loss, reduction, per_example, dtype, int(total_rows), int(row_offset))


def fold_partials(parts: Iterable[GradientResult], edge_sums: np.ndarray | None = None) -> GradientResult:
    """Fold results of consecutive row ranges, in iteration order, into one.

    Losses add; loss-mode sums (1-D edge_grads and deltas) add; outputs and per-example or
    output-mode rows are concatenated. Same parts in the same order give bit-identical results.
    ``edge_sums`` (as long as a part's edge_grads): where the edge sums accumulate instead of a new array.
    """
    outputs, rows_grads, rows_deltas = [], [], []
    loss = grads = deltas = None
    count = 0
    for part in parts:
        count += 1
        outputs.append(part.outputs)
        if part.loss is not None:
            loss = part.loss if loss is None else loss + part.loss
        if part.edge_grads.ndim == 1:       # a loss-mode sum: accumulate into our own copy
            if grads is None:
                grads = part.edge_grads.copy() if edge_sums is None else _copied(part.edge_grads, edge_sums)
            else:
                grads = _add(grads, part.edge_grads)
            deltas = part.deltas.copy() if deltas is None else _add(deltas, part.deltas)
        else:
            rows_grads.append(part.edge_grads)
            rows_deltas.append(part.deltas)
    if count == 0:
        raise ValueError("fold_partials: no parts to fold")
    if grads is None:
        grads, deltas = _concat(rows_grads), _concat(rows_deltas)
    elif rows_grads:
        raise ValueError("fold_partials: cannot fold summed parts with per-example parts")
    return GradientResult(_concat(outputs), loss, grads, deltas)


def _copied(part: np.ndarray, into: np.ndarray) -> np.ndarray:
    np.copyto(into, part)
    return into


def _add(total: np.ndarray, part: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):   # a sum past the range is named by the caller
        total += part
    return total


def _concat(arrays: list[np.ndarray]) -> np.ndarray:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def _check_net(net: Any) -> None:
    if not isinstance(net, Network):
        raise TypeError(f"net must be an edgegrad.Network, got {type(net).__name__}")


def _run(net: Network, x: np.ndarray, t: np.ndarray | None, loss: str | None, reduction: str,
         per_example: bool, dtype: str, total_rows: int, row_offset: int) -> GradientResult:
    """Validated rows in slabs: folded (loss-mode sums) or written into a preallocated result."""
    plan = get_plan(net, dtype)
    batch = x.shape[0]
    step = slab_rows(net.n_inputs, net.n_nodes, net.n_outputs, loss, per_example, plan.dtype, net.widest_level)
    spans = [(a, min(a + step, batch)) for a in range(0, batch, step)]
    scratch = passes.pass_bytes(plan, min(step, batch), None if loss else net.n_outputs)
    kernel = choose_kernel(plan)                     # once per call: every slab on the same kernel
    summed = loss is not None and not per_example
    # a loss-mode slab's edge sums (and, in a kernel's own edge order, their running total) live in the
    # reused scratch too: fresh arrays of E numbers cost page faults on every call
    slots = kernel.sum_slots(plan) if summed else 0
    sums_bytes = (slots * plan.dtype.itemsize + 63) // 64 * 64
    own_order = kernel.own_edge_order
    with np.errstate(over="ignore", invalid="ignore"), \
            workspace.borrowed(scratch + sums_bytes * (2 if own_order else 1)) as buf:
        if summed:
            slab_sums, after = workspace.carve(buf, scratch, (slots,), plan.dtype)
            total = workspace.carve(buf, after, (slots,), plan.dtype)[0] if own_order else None
            parts: Iterator[GradientResult] = (
                _slab(kernel, net, plan, x[a:b], t[a:b], loss, reduction, total_rows, row_offset + a, None, buf,
                      slab_sums)
                for a, b in spans)
            result = fold_partials(parts, total)
            result.edge_grads = kernel.file_order(plan, result.edge_grads)
            if not result.is_finite():
                raise InvalidInput(result_overflow_message(net, plan, result))
            return result
        result = _allocate(net, plan, batch, loss)
        for a, b in spans:
            rows = GradientResult(result.outputs[a:b], None, result.edge_grads[a:b], result.deltas[a:b])
            part = _slab(kernel, net, plan, x[a:b], None if t is None else t[a:b], loss, reduction, total_rows,
                         row_offset + a, rows, buf)
            if part.loss is not None:
                result.loss = part.loss if result.loss is None else result.loss + part.loss
        if result.loss is not None and not np.isfinite(result.loss):
            raise InvalidInput(result_overflow_message(net, plan, result))
        return result


def _allocate(net: Network, plan: Plan, batch: int, loss: str | None) -> GradientResult:
    """The per-example (loss mode) or output-mode result arrays for ``batch`` rows."""
    k = net.n_outputs
    lead = (batch,) if loss is not None else (batch, k)
    return GradientResult(np.empty((batch, k), dtype=plan.dtype), None,
                          np.empty(lead + (net.n_edges,), dtype=plan.dtype),
                          np.empty(lead + (net.n_nodes,), dtype=plan.dtype))


def _slab(kernel: Kernel[Plan], net: Network, plan: Plan, x: np.ndarray, t: np.ndarray | None, loss: str | None,
          reduction: str, total_rows: int, row_offset: int, out: GradientResult | None, buf: np.ndarray,
          sums: np.ndarray | None = None) -> GradientResult:
    """One slab on ``kernel``: a loss-mode sum (``out`` None) or these rows written into ``out``; overflow named by row.

    The pass's buffers are carved from ``buf``; only a loss-mode sum's edge_grads refer to scratch: they
    are written into ``sums`` (in the kernel's edge order, see ``Kernel.own_edge_order``).
    """
    x = x.astype(plan.dtype, copy=False)
    buffers = kernel.forward(plan, x, None if loss else net.n_outputs, buf)
    out_rows = buffers.acts[plan.n_inputs + plan.output_rows]
    if out is None:
        outputs = out_rows.T.copy()
    else:
        outputs = out.outputs
        outputs[...] = out_rows.T

    if loss is None:                                     # output mode: K backward passes at once
        kernel.backward(plan, buffers, None)
        kernel.write_rows(plan, buffers, out.edge_grads, out.deltas)
        part = out
    else:
        value, d_out = loss_and_grad(loss, reduction, outputs, t, total_rows, row_offset)
        direct = d_out.T.astype(plan.dtype)
        if out is not None:                              # per-example rows
            kernel.backward(plan, buffers, direct)
            kernel.write_rows(plan, buffers, out.edge_grads, out.deltas)
            part = GradientResult(outputs, value, out.edge_grads, out.deltas)
        else:                                            # summed over the slab's rows
            node_sums = kernel.backward_summed(plan, buffers, direct, sums)
            part = GradientResult(outputs, value, sums, node_sums[plan.node_row])
            if not part.is_finite():
                in_file_order = GradientResult(outputs, value, kernel.file_order(plan, sums), part.deltas)
                raise InvalidInput(overflow_message(net, plan, buffers, in_file_order, row_offset))
            return part
    if not part.is_finite():
        raise InvalidInput(overflow_message(net, plan, buffers, part, row_offset))
    return part


def node_values(net: Network, inputs: Any, dtype: str = "float64") -> passes.NodeValues:
    """z, o and f'(z) of every node for a batch, in file order (for explanations and checks)."""
    x, _ = check_options(net, inputs, None, None, "mean", dtype, False)
    plan = get_plan(net, dtype, live_only=False)                 # every node's value, not only the live ones
    with np.errstate(over="ignore", invalid="ignore"):  # explanations show inf rather than warn
        return passes.plan_node_values(plan, x.astype(plan.dtype, copy=False))
