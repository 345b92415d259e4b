"""``edgegrad.gradients``: the in-process entry point over the plan and the engine.

Every call runs its rows in slabs whose engine working memory stays under ``memory.slab_budget()``,
so memory grows with the batch only by the inputs and the result. Loss-mode (summed) slabs are
folded in slab order by ``fold_partials``; per-example and output-mode slabs write their rows
straight into the result. ``partial_gradients`` is the same path for rows of a larger batch (a
shard): its parts, folded in row order, give the whole batch's result. Each call runs on one kernel
(``kernel.choose_kernel``: numpy or numba); ``_run`` and ``_rows`` call only its ``Kernel`` methods.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np

from ..errors import InvalidInput
from ..model.network import Network
from . import passes, workspace
from .batch import check_options
from .clipping import check_clipping, clip_factors, example_norms
from .kernel import Kernel, choose_kernel
from .losses import loss_and_grad, loss_scale
from .memory import result_bytes_per_row, rows_for_budget, slab_rows, working_memory_bytes
from .overflow import overflow_message, result_overflow_message
from .passes import PassBuffers
from .plan import Plan, get_plan
from .result import GradientResult

__all__ = ["gradients", "partial_gradients", "fold_partials", "node_values", "working_memory_bytes",
           "result_bytes_per_row", "rows_for_budget"]


def gradients(net: Network, inputs: Any, targets: Any = None, loss: str | None = None,
              reduction: str = "mean", per_example: bool = False, dtype: str = "float64",
              norms: bool = False, clip_norm: float | None = None) -> GradientResult:
    """Outputs and exact derivatives of ``net`` for a batch, in output mode or loss mode (see the contract).

    ``norms``: also each example's gradient norm (``result.norms``); ``clip_norm``: each example's
    gradient clipped to that norm before the sum (DP-SGD's step; docs/math.md, section 8).
    """
    _check_net(net)
    x, t = check_options(net, inputs, targets, loss, reduction, dtype, per_example)
    clip = _Clip.of(loss, norms, clip_norm)
    return _run(net, x, t, loss, reduction, per_example, dtype, x.shape[0], 0, clip)


def partial_gradients(net: Network, inputs: Any, targets: Any = None, loss: str | None = None,
                      reduction: str = "mean", per_example: bool = False, dtype: str = "float64", *,
                      total_rows: int, row_offset: int = 0, norms: bool = False,
                      clip_norm: float | None = None) -> GradientResult:
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
    clip = _Clip.of(loss, norms, clip_norm)
    if row_offset + x.shape[0] > total_rows:
        raise InvalidInput(f"total_rows: {total_rows} is less than row_offset {row_offset}"
                           f" + these {x.shape[0]} rows")
    return _run(net, x, t, loss, reduction, per_example, dtype, int(total_rows), int(row_offset), clip)


def fold_partials(parts: Iterable[GradientResult], edge_sums: np.ndarray | None = None) -> GradientResult:
    """Fold results of consecutive row ranges, in iteration order, into one.

    Losses add; loss-mode sums (1-D edge_grads and deltas) add; outputs and per-example or
    output-mode rows are concatenated. Same parts in the same order give bit-identical results.
    ``edge_sums`` (as long as a part's edge_grads): where the edge sums accumulate instead of a new array (the
    first part's own edge_grads may be that array).
    """
    fold = _Fold(edge_sums)
    for part in parts:
        fold.add(part)
    return fold.result()


class _Fold:
    """``fold_partials`` one part at a time: ``add`` each part in row order, then ``result``."""

    def __init__(self, edge_sums: np.ndarray | None = None) -> None:
        self.edge_sums = edge_sums
        self.outputs: list[np.ndarray] = []
        self.rows_grads: list[np.ndarray] = []
        self.rows_deltas: list[np.ndarray] = []
        self.norms: list[np.ndarray] = []
        self.loss: float | None = None
        self.grads: np.ndarray | None = None
        self.deltas: np.ndarray | None = None
        self.count = 0

    def add(self, part: GradientResult) -> None:
        """Fold in the next part (rows after the last one's)."""
        self.count += 1
        self.outputs.append(part.outputs)
        if part.norms is not None:
            self.norms.append(part.norms)
        if part.loss is not None:
            self.loss = part.loss if self.loss is None else self.loss + part.loss
        if part.edge_grads.ndim == 1:       # a loss-mode sum: accumulate into our own copy
            if self.grads is None:
                self.grads = (part.edge_grads.copy() if self.edge_sums is None
                              else _copied(part.edge_grads, self.edge_sums))
            else:
                self.grads = _add(self.grads, part.edge_grads)
            self.deltas = part.deltas.copy() if self.deltas is None else _add(self.deltas, part.deltas)
        else:
            self.rows_grads.append(part.edge_grads)
            self.rows_deltas.append(part.deltas)

    def result(self) -> GradientResult:
        """The folded result of the parts added so far."""
        if self.count == 0:
            raise ValueError("fold_partials: no parts to fold")
        if self.grads is None or self.deltas is None:
            grads, deltas = _concat(self.rows_grads), _concat(self.rows_deltas)
        elif self.rows_grads:
            raise ValueError("fold_partials: cannot fold summed parts with per-example parts")
        else:
            grads, deltas = self.grads, self.deltas
        return GradientResult(_concat(self.outputs), self.loss, grads, deltas,
                              _concat(self.norms) if self.norms else None)


def _copied(part: np.ndarray, into: np.ndarray) -> np.ndarray:
    if part is not into:                                   # a part already written where the sums go
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


class _Clip(NamedTuple):
    """A loss-mode call's per-example norms and clipping (None when it asks for neither)."""

    clip_norm: float | None

    @staticmethod
    def of(loss: str | None, norms: Any, clip_norm: Any) -> _Clip | None:
        """The call's choice, checked; None when it wants neither norms nor clipping."""
        c = check_clipping(loss, norms, clip_norm)
        return _Clip(c) if norms or c is not None else None


def _run(net: Network, x: np.ndarray, t: np.ndarray | None, loss: str | None, reduction: str,
         per_example: bool, dtype: str, total_rows: int, row_offset: int, clip: _Clip | None = None) -> GradientResult:
    """Validated rows in slabs: loss-mode sums folded here, slab by slab, or rows written by ``_rows``.

    A loss-mode slab is the kernel's ``forward``, the loss, then ``backward_summed``: δ, and every
    edge's ∂P/∂w(u, v) = Σ_b δ(v)·o[u] in the same pass.
    """
    plan = get_plan(net, dtype)
    batch = x.shape[0]
    step = slab_rows(net.n_inputs, net.n_nodes, net.n_outputs, loss, per_example, plan.dtype, net.widest_level)
    if clip is not None and clip.clip_norm is not None:   # narrower slabs where the norm pass's squares need it
        step = passes.squares_rows(plan, step)
    spans = [(a, min(a + step, batch)) for a in range(0, batch, step)]
    scratch = passes.pass_bytes(plan, min(step, batch), None if loss else net.n_outputs, clip is not None)
    kernel = choose_kernel(plan)                     # once per call: every slab on the same kernel
    if loss is None or per_example:
        return _rows(kernel, net, plan, x, t, loss, reduction, total_rows, row_offset, clip, spans, scratch)
    assert t is not None  # loss mode
    # a slab's edge sums (and, in a kernel's own edge order, their running total) live in the reused
    # scratch too: fresh arrays of E numbers cost page faults on every call
    slots = kernel.sum_slots(plan)
    sums_bytes = (slots * plan.dtype.itemsize + 63) // 64 * 64
    own_order = kernel.own_edge_order
    with np.errstate(over="ignore", invalid="ignore"), \
            workspace.borrowed(scratch + sums_bytes * (2 if own_order else 1)) as buf:
        sums, after = workspace.carve(buf, scratch, (slots,), plan.dtype)
        total: np.ndarray | None = workspace.carve(buf, after, (slots,), plan.dtype)[0] if own_order else None
        if len(spans) == 1:         # one slab: its sums are the total (file order: the result, a fresh array)
            sums = total = sums if own_order else np.empty(slots, dtype=plan.dtype)
        fold = _Fold(total)
        norms: np.ndarray | None
        for a, b in spans:
            buffers, outputs = _forward(kernel, net, plan, x[a:b], loss, buf, None, clip is not None)
            value, direct, scale = _loss(net, plan, loss, reduction, outputs, t[a:b], total_rows, row_offset + a)
            if clip is not None and clip.clip_norm is not None:   # clipped: δ scaled, then summed
                kernel.backward(plan, buffers, direct)
                norms, scaled = _clipped(kernel, plan, buffers, clip, scale, row_offset + a, None)
                assert scaled is not None  # clip_norm
                kernel.edge_sums(plan, buffers, sums)
                part = GradientResult(outputs, value, sums, scaled[plan.node_row], norms)
                if not part.is_finite():
                    raise InvalidInput(overflow_message(net, plan, buffers, part, row_offset + a))
            else:
                node_sums = kernel.backward_summed(plan, buffers, direct, sums)   # δ and Σ_b δ(v)·o[u]
                norms = None if clip is None else _clipped(kernel, plan, buffers, clip, scale, row_offset + a,
                                                           None)[0]
                part = GradientResult(outputs, value, sums, node_sums[plan.node_row], norms)
                if not part.is_finite():
                    in_file_order = GradientResult(outputs, value, kernel.file_order(plan, sums), part.deltas)
                    raise InvalidInput(overflow_message(net, plan, buffers, in_file_order, row_offset + a))
            fold.add(part)
        result = fold.result()
        result.edge_grads = kernel.file_order(plan, result.edge_grads)
        if len(spans) > 1 and not result.is_finite():           # one slab's are checked above
            raise InvalidInput(result_overflow_message(net, plan, result))
        return result


def _rows(kernel: Kernel[Plan], net: Network, plan: Plan, x: np.ndarray, t: np.ndarray | None, loss: str | None,
          reduction: str, total_rows: int, row_offset: int, clip: _Clip | None, spans: list[tuple[int, int]],
          scratch: int) -> GradientResult:
    """Per-example (loss mode) or output-mode rows, slab by slab, written into one preallocated result."""
    with np.errstate(over="ignore", invalid="ignore"), workspace.borrowed(scratch) as buf:
        result = _allocate(net, plan, x.shape[0], loss)
        if clip is not None:
            result.norms = np.empty(x.shape[0], dtype=plan.dtype)
        for a, b in spans:
            out = GradientResult(result.outputs[a:b], None, result.edge_grads[a:b], result.deltas[a:b],
                                 None if result.norms is None else result.norms[a:b])
            buffers, outputs = _forward(kernel, net, plan, x[a:b], loss, buf, out.outputs, clip is not None)
            if loss is None:                                     # output mode: K backward passes at once
                kernel.backward(plan, buffers, None)
                kernel.write_rows(plan, buffers, out.edge_grads, out.deltas)
                part = out
            else:
                assert t is not None  # loss mode
                value, direct, scale = _loss(net, plan, loss, reduction, outputs, t[a:b], total_rows, row_offset + a)
                kernel.backward(plan, buffers, direct)
                norms = None if clip is None else _clipped(kernel, plan, buffers, clip, scale, row_offset + a,
                                                           out.norms)[0]
                kernel.write_rows(plan, buffers, out.edge_grads, out.deltas)
                part = GradientResult(outputs, value, out.edge_grads, out.deltas, norms)
            if not part.is_finite():
                raise InvalidInput(overflow_message(net, plan, buffers, part, row_offset + a))
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


def _forward(kernel: Kernel[Plan], net: Network, plan: Plan, x: np.ndarray, loss: str | None, buf: np.ndarray,
             into: np.ndarray | None, squares: bool = False) -> tuple[PassBuffers, np.ndarray]:
    """A slab's forward pass (buffers carved from ``buf``; ``squares``: each node's 1 + Σ o² of its sources too,
    for the norms) and its outputs (B×K: written into ``into``, or new)."""
    buffers = kernel.forward(plan, x.astype(plan.dtype, copy=False), None if loss else net.n_outputs, buf, squares)
    out_rows = buffers.acts[plan.n_inputs + plan.output_rows]
    if into is None:
        return buffers, out_rows.T.copy()
    into[...] = out_rows.T
    return buffers, into


def _loss(net: Network, plan: Plan, loss: str, reduction: str, outputs: np.ndarray, t: np.ndarray,
          total_rows: int, row_offset: int) -> tuple[float, np.ndarray, float]:
    """A slab's loss, ∂L/∂o of its outputs (K×B, the backward pass's ``direct``) and the loss's mean factor."""
    value, d_out = loss_and_grad(loss, reduction, outputs, t, total_rows, row_offset)
    return value, d_out.T.astype(plan.dtype), loss_scale(loss, reduction, net.n_outputs, total_rows)


def _clipped(kernel: Kernel[Plan], plan: Plan, buffers: PassBuffers, clip: _Clip, scale: float, row_offset: int,
             into: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """This slab's example norms (written into ``into`` where given); with ``clip_norm``, each example's δ
    column scaled by its clip factor in place, before the gathers, and Σ_b δ per node row after (else None).
    ``scale``: the loss's mean factor."""
    norms = example_norms(plan, buffers.acts, buffers.deltas, scale, row_offset, kernel.source_squares,
                          buffers.squares, kernel.example_squares)
    limit = np.finfo(plan.dtype).max
    if plan.dtype != np.float64 and np.any(norms > limit):
        row = row_offset + int(np.argmax(norms > limit))
        raise InvalidInput(f"norms[{row}]: the gradient norm of inputs row {row} overflows {plan.dtype.name}"
                           " (its δ · o too large)")
    node_sums = None
    if clip.clip_norm is not None:
        node_sums = kernel.scale_deltas(plan, buffers.deltas, clip_factors(norms, clip.clip_norm).astype(plan.dtype))
    if into is None:
        return norms.astype(plan.dtype), node_sums
    into[...] = norms
    return into, node_sums


def node_values(net: Network, inputs: Any, dtype: str = "float64") -> passes.NodeValues:
    """z, o and f'(z) of every node for a batch, in file order (for explanations and checks)."""
    x, _ = check_options(net, inputs, None, None, "mean", dtype, False)
    plan = get_plan(net, dtype, live_only=False)                 # every node's value, not only the live ones
    with np.errstate(over="ignore", invalid="ignore"):  # explanations show inf rather than warn
        return passes.plan_node_values(plan, x.astype(plan.dtype, copy=False))
