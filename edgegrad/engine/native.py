"""The compiled engine path: which kernel a plan runs on, and the loss-mode passes over numba kernels.

``EDGEGRAD_KERNEL`` (the ``kernel`` setting) picks the kernel: ``numpy`` always runs the numpy/scipy
passes (``passes``); ``compiled`` runs the forward pass and the loss-mode backward pass on the numba
kernels of ``compiled`` (with each edge's summed gradient fused into the backward pass); ``auto`` (the
default) does that for plans big enough to repay numba's one-off import (``AUTO_MIN_EDGES``) with no
dense BLAS levels (``passes`` is faster there). The choice depends on the plan alone, never on the
batch or the thread count, so a network's results are bit-identical across calls, slabs and workers.
Where numba is missing or fails to load, every plan runs on numpy (logged once). numba is imported
only when a plan first needs it.
"""

from __future__ import annotations

import importlib
import logging
import threading
from typing import Any, NamedTuple

import numpy as np

from ..errors import InvalidInput
from ..model.activations import ACTIVATION_NAMES
from ..settings import ENV_NAMES, KERNELS, Settings
from . import kernelcache, passes
from .memory import thread_count
from .plan import Plan

__all__ = ["AUTO_MIN_EDGES", "COMPILED_WRITE_MIN_BYTES", "example_writer", "kernel_setting", "available", "uses_compiled", "forward", "backward", "grad_slots",
           "to_file_order"]

log = logging.getLogger(__name__)

#: ``auto`` compiles plans of at least this many edges (below, numba's import and cache load cost more)
AUTO_MIN_EDGES = 20_000
#: row chunks per thread a wide level is cut into (the pool balances uneven chunks)
CHUNKS_PER_THREAD = 2
_INT32_MAX = 2**31 - 1
#: cost of an activation per example, in edges (one edge: a row read and a multiply-add per example),
#: measured here; nodes of a level are sorted by activation, so chunks are cut by edges + this
ACTIVATION_COST = {"identity": 0.5, "sigmoid": 1.8, "tanh": 2.4, "relu": 0.5, "leaky_relu": 0.5, "elu": 2.2,
                   "softplus": 3.2, "gelu": 17.0, "silu": 1.9, "sin": 2.3, "gauss": 1.7, "abs": 0.5}

_lock = threading.Lock()
_module: Any = None
_failure: str | None = None


def kernel_setting() -> str:
    """The ``kernel`` setting (EDGEGRAD_KERNEL): auto, numpy or compiled; InvalidInput for anything else."""
    value = (Settings.read("kernel") or "auto").strip().lower()
    if value not in KERNELS:
        raise InvalidInput(f"{ENV_NAMES['kernel']}: expected one of {', '.join(KERNELS)}, got {value!r}")
    return value


def _load() -> Any:
    """The ``compiled`` module, imported once; None (and the reason logged once) where numba fails."""
    global _module, _failure
    if _module is not None or _failure is not None:
        return _module
    with _lock:
        if _module is None and _failure is None:
            try:
                kernelcache.notice_if_uncached()
                compiled = importlib.import_module(f"{__package__}.compiled")
                if compiled.ORDER != ACTIVATION_NAMES:
                    raise ImportError("the compiled kernels number the activations differently")
                _module = compiled
            except Exception as exc:          # ImportError, or numba failing in its own way
                _failure = f"{type(exc).__name__}: {exc}"
                log.warning("compiled engine kernels unavailable, using numpy: %s", _failure)
    return _module


#: ``auto`` writes per-example and output-mode results at least this large with the compiled writer (one pass
#: over the result instead of numpy's gather then multiply; the same bits: one product per value)
COMPILED_WRITE_MIN_BYTES = 16 << 20


def example_writer(nbytes: int) -> Any:
    """The compiled module whose kernels (``example_rows``, ``output_rows``, ``take_rows``, ``example_major_rows``)
    write a per-example or output-mode result of ``nbytes``, or None for numpy's way: the kernel setting
    ``numpy``, numba missing, or (``auto``) a result too small to repay loading numba."""
    choice = kernel_setting()
    if choice == "numpy" or (choice == "auto" and nbytes < COMPILED_WRITE_MIN_BYTES):
        return None
    return _load()


def available() -> bool:
    """Whether the compiled kernels load here (imports numba on first call)."""
    return _load() is not None


def eligible(plan: Plan) -> bool:
    """Whether ``auto`` would compile this plan: enough edges, no dense BLAS level, int32 indices."""
    return (plan.edge_file.size >= AUTO_MIN_EDGES and not plan.dense.levels and fits_int32(plan))


def fits_int32(plan: Plan) -> bool:
    """Whether every row and edge index of the plan fits the kernels' int32 index arrays."""
    return max(plan.edge_file.size, plan.n_inputs + plan.n_nodes) < _INT32_MAX


def uses_compiled(plan: Plan) -> bool:
    """Whether this plan's passes run on the compiled kernels (see the module docstring)."""
    choice = kernel_setting()
    if choice == "numpy":
        return False
    if choice == "auto" and not eligible(plan):
        return False
    return fits_int32(plan) and available()


class NativePlan(NamedTuple):
    """The plan as the kernels read it: in- and out-edges as CSR over plan rows, int32 indices."""

    in_ptr: np.ndarray       #: (n_live+1,) node row -> first in-edge
    in_src: np.ndarray       #: activation row of each in-edge's source
    in_w: np.ndarray         #: its weight
    bias: np.ndarray         #: (n_live,) per node row
    codes: np.ndarray        #: (n_live,) activation code per node row
    out_ptr: np.ndarray      #: (n_inputs+n_live+1,) activation row -> first out-edge
    out_dst: np.ndarray      #: node row of each out-edge's destination
    out_w: np.ndarray
    file_take: np.ndarray    #: (E,) file edge -> its out-edge position (edges into dead nodes: the last, a 0)
    direct_ptr: np.ndarray   #: (n_live+1,) node row -> its outputs in ``direct_k``
    direct_k: np.ndarray     #: output indices, grouped by node row
    levels: tuple[tuple[int, int], ...]  #: node rows of each level
    forward_cost: np.ndarray   #: (n_live+1,) cumulative forward cost of node rows (edges + activation)
    backward_cost: np.ndarray  #: (n_inputs+n_live+1,) cumulative backward cost of activation rows (edges + 1)
    schedules: dict[tuple[Any, ...], list[list[tuple[int, int]]]]  #: steps already worked out (``_steps``)


def native_plan(plan: Plan) -> NativePlan:
    """The kernels' arrays of ``plan``, built on first use and kept with the plan."""
    if plan.native is None:
        with _lock:
            if plan.native is None:
                plan.native = _build(plan)
    return plan.native


def _build(plan: Plan) -> NativePlan:
    n_in, n_live = plan.n_inputs, plan.n_live
    i32 = np.int32
    live = int(np.searchsorted(plan.edge_dst, n_live))          # plan edges into live nodes come first
    dst, src = plan.edge_dst[:live], plan.edge_src[:live]
    w = plan.edge_weight[:live]
    in_ptr = np.searchsorted(dst, np.arange(n_live + 1)).astype(i32)
    order = np.lexsort((dst, src))                               # out-edges: by source row, then destination
    out_ptr = np.searchsorted(src[order], np.arange(n_in + n_live + 1)).astype(i32)
    outs = plan.output_rows
    by_row = np.argsort(outs, kind="stable")
    direct_ptr = np.searchsorted(outs[by_row], np.arange(n_live + 1)).astype(i32)
    file_take = np.full(plan.edge_file.size, live, dtype=np.int64)
    file_take[plan.edge_file[:live][order]] = np.arange(live)
    return NativePlan(in_ptr, src.astype(i32), np.ascontiguousarray(w), plan.node_bias[:n_live].copy(),
                      plan.node_codes[:n_live].astype(np.int8), out_ptr, dst[order].astype(i32),
                      np.ascontiguousarray(w[order]), file_take, direct_ptr,
                      by_row.astype(i32), tuple((level.start, level.stop) for level in plan.levels),
                      _cumulative(np.diff(in_ptr) + np.array([ACTIVATION_COST[name] for name in ACTIVATION_NAMES])[
                          plan.node_codes[:n_live]]), _cumulative(np.diff(out_ptr) + 1.0), {})


def _cumulative(cost: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(cost, dtype=np.float64)])


def _chunks(cost: np.ndarray, lo: int, hi: int, parts: int) -> list[tuple[int, int]]:
    """Rows [lo, hi) cut into ``parts`` runs of about equal cost (``cost``: cumulative, indexed by row)."""
    cuts = np.searchsorted(cost[lo:hi + 1], np.linspace(cost[lo], cost[hi], parts + 1)[1:-1])
    bounds = sorted({lo, hi, *(lo + int(c) for c in cuts if 0 < c < hi - lo)})
    return list(zip(bounds[:-1], bounds[1:]))


def _schedule(levels: list[tuple[int, int]], cost: np.ndarray, offset: int, width: int,
              threads: int) -> list[list[tuple[int, int]]]:
    """Steps over levels (given in run order): a wide level's row chunks, or a run of small levels as one range.

    ``cost`` is the cumulative cost of rows (index ``offset + row``); a step of one range runs inline.
    """
    steps: list[list[tuple[int, int]]] = []
    run: tuple[int, int] | None = None
    for lo, hi in levels:
        work = (cost[offset + hi] - cost[offset + lo]) * width
        if threads > 1 and work >= passes.PARALLEL_MIN_WORK:
            if run is not None:
                steps.append([run])
                run = None
            chunks = _chunks(cost, offset + lo, offset + hi, threads * CHUNKS_PER_THREAD)
            steps.append([(a - offset, b - offset) for a, b in chunks])
        elif run is None:
            run = (lo, hi)
        else:                                  # levels arrive in run order: extend the range either way
            run = (min(run[0], lo), max(run[1], hi))
    if run is not None:
        steps.append([run])
    return steps


#: schedules kept per plan (one per slab width and thread count seen)
SCHEDULES_KEPT = 16


def _steps(native: NativePlan, backward: bool, width: int, threads: int) -> list[list[tuple[int, int]]]:
    """The forward (or backward) pass's steps for this width and thread count, worked out once."""
    key = (backward, width, threads, passes.PARALLEL_MIN_WORK, CHUNKS_PER_THREAD)
    steps = native.schedules.get(key)
    if steps is None:
        if backward:
            steps = _schedule(list(reversed(native.levels)), native.backward_cost, int(native.out_ptr.size
                              - native.in_ptr.size), width, threads)
        else:
            steps = _schedule(list(native.levels), native.forward_cost, 0, width, threads)
        if len(native.schedules) >= SCHEDULES_KEPT:
            native.schedules.clear()
        native.schedules[key] = steps
    return steps


def _run(step: list[tuple[int, int]], kernel: Any, *args: Any) -> None:
    """One step: its row ranges on the pool (several) or inline (one)."""
    if len(step) == 1:
        kernel(step[0][0], step[0][1], *args)
        return
    passes._run_all([lambda a=a, b=b: kernel(a, b, *args) for a, b in step], passes.PARALLEL_MIN_WORK)


def forward(plan: Plan, x: np.ndarray, n_outputs: int | None = None,
            workspace: np.ndarray | None = None) -> passes.PassBuffers:
    """``passes.forward`` on the compiled kernels: the same buffers, filled the same way (o, f'(z))."""
    kernels = _load()
    buffers = passes.pass_buffers(plan, x, n_outputs, workspace)
    native = native_plan(plan)
    acts, fprime = buffers.acts, buffers.fprime
    args = (plan.n_inputs, native.in_ptr, native.in_src, native.in_w, native.bias, native.codes, acts, fprime)
    for step in _steps(native, False, acts.shape[1], thread_count()):
        _run(step, kernels.forward_rows, *args)
    return buffers


def grad_slots(plan: Plan) -> int:
    """Length of the kernels' edge-gradient array: live edges in out-edge order, then one 0 for the rest."""
    return int(native_plan(plan).out_ptr[-1]) + 1


def to_file_order(plan: Plan, grads: np.ndarray) -> np.ndarray:
    """Edge gradients in the kernels' order (``grad_slots`` long) as a new array in file order: one gather."""
    out = np.empty(plan.edge_file.size, dtype=grads.dtype)
    np.take(grads, native_plan(plan).file_take, out=out, mode="clip")
    return out


def backward(plan: Plan, buffers: passes.PassBuffers, direct: np.ndarray,
             grads: np.ndarray | None = None) -> np.ndarray:
    """Loss-mode δ in place of f'(z) (``direct``: ∂L/∂o of the outputs, K×B); returns Σ_b δ per node row.

    With ``grads`` (``grad_slots`` long) every edge's Σ_b δ(v)·o[u] is written there in the same pass,
    in the kernels' out-edge order (sums of slabs add in that order; ``to_file_order`` puts them in
    file order once).
    """
    kernels = _load()
    native = native_plan(plan)
    acts, deltas = buffers.acts, buffers.deltas
    width, threads = deltas.shape[1], thread_count()
    sums = np.zeros(plan.n_nodes, dtype=plan.dtype)
    fused = grads is not None
    n_in = plan.n_inputs
    live = int(native.out_ptr[-1])
    out = grads if grads is not None else np.empty(0, dtype=plan.dtype)
    direct = np.ascontiguousarray(direct, dtype=plan.dtype)
    args = (n_in, native.out_ptr, native.out_dst, native.out_w, native.direct_ptr,
            native.direct_k, direct, acts, deltas, out, sums, fused)
    for step in _steps(native, True, width, threads):
        _run(step, kernels.backward_rows, *args)
    if fused:
        work = native.backward_cost[n_in] * width
        step = (_chunks(native.backward_cost, 0, n_in, threads * CHUNKS_PER_THREAD)
                if threads > 1 and work >= passes.PARALLEL_MIN_WORK else [(0, n_in)])
        _run(step, kernels.input_grads, native.out_ptr, native.out_dst, acts, deltas, out)
        out[live] = 0
    return sums
