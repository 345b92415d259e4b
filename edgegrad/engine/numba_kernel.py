"""The numba kernel's driver: the plan's CSR arrays, row schedules and threads, calling ``numba_loops``.

This module is pure Python and imports no numba: it loads ``numba_loops`` (the jitted code) on first
use and runs the forward pass and the loss-mode backward pass on it, with each edge's summed
gradient fused into the backward pass (``NumbaKernel``, one of the two implementations of
``kernel.Kernel``; ``kernel.choose_kernel`` decides when it runs). Where numba is missing or fails
to load, ``available`` is False and every plan runs on numpy (logged once).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar, NamedTuple

import numpy as np

from ..model.activations import ACTIVATION_NAMES
from . import kernelcache, passes, pool
from .memory import thread_count
from .passes import PassBuffers
from .plan import Plan

__all__ = ["NumbaKernel", "NumbaPlan", "available", "loops", "fits_int32", "numba_plan", "rows_writer"]

log = logging.getLogger(__name__)

#: row chunks per thread a wide level is cut into (the pool balances uneven chunks)
CHUNKS_PER_THREAD = 2
_INT32_MAX = 2**31 - 1
#: cost of an activation per example, in edges (one edge: a row read and a multiply-add per example),
#: measured here; nodes of a level are sorted by activation, so chunks are cut by edges + this
ACTIVATION_COST = {"identity": 0.5, "sigmoid": 1.8, "tanh": 2.4, "relu": 0.5, "leaky_relu": 0.5, "elu": 2.2,
                   "softplus": 3.2, "gelu": 17.0, "silu": 1.9, "sin": 2.3, "gauss": 1.7, "abs": 0.5}


_lock = threading.Lock()


def loops() -> Any:
    """The ``numba_loops`` module, imported once; None (and the reason logged once) where numba fails."""
    return kernelcache.load("numba_loops", "compiled engine kernels")


def available() -> bool:
    """Whether the numba loops load here (imports numba on first call)."""
    return loops() is not None


def fits_int32(plan: Plan) -> bool:
    """Whether every row and edge index of the plan fits the loops' int32 index arrays."""
    return max(plan.edge_file.size, plan.n_inputs + plan.n_nodes) < _INT32_MAX


def rows_writer(nbytes: int, min_bytes: float) -> Any:
    """The loops that write a per-example or output-mode result of ``nbytes`` (``passes.per_example_results``'s
    ``writer``): ``numba_loops`` from ``min_bytes`` on, where it loads; else None (numpy's way)."""
    return loops() if nbytes >= min_bytes else None


class NumbaPlan(NamedTuple):
    """The plan as the numba loops read it: in- and out-edges as CSR over plan rows, int32 indices."""

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


def numba_plan(plan: Plan) -> NumbaPlan:
    """The loops' arrays of ``plan``, built on first use and kept with the plan."""
    if plan.numba_arrays is None:
        with _lock:
            if plan.numba_arrays is None:
                plan.numba_arrays = _build(plan)
    return plan.numba_arrays


def _build(plan: Plan) -> NumbaPlan:
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
    return NumbaPlan(in_ptr, src.astype(i32), np.ascontiguousarray(w), plan.node_bias[:n_live].copy(),
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
        if threads > 1 and work >= pool.PARALLEL_MIN_WORK:
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


def _steps(arrays: NumbaPlan, backward: bool, width: int, threads: int) -> list[list[tuple[int, int]]]:
    """The forward (or backward) pass's steps for this width and thread count, worked out once."""
    key = (backward, width, threads, pool.PARALLEL_MIN_WORK, CHUNKS_PER_THREAD)
    steps = arrays.schedules.get(key)
    if steps is None:
        if backward:
            steps = _schedule(list(reversed(arrays.levels)), arrays.backward_cost, int(arrays.out_ptr.size
                              - arrays.in_ptr.size), width, threads)
        else:
            steps = _schedule(list(arrays.levels), arrays.forward_cost, 0, width, threads)
        if len(arrays.schedules) >= SCHEDULES_KEPT:
            arrays.schedules.clear()
        arrays.schedules[key] = steps
    return steps


#: ``forward_rows``'s ``fan`` when no sources' squares are wanted
_NO_SQUARES = np.zeros((0, 0))


def _run(step: list[tuple[int, int]], loop: Any, *args: Any) -> None:
    """One step: its row ranges on the pool (several) or inline (one)."""
    if len(step) == 1:
        loop(step[0][0], step[0][1], *args)
        return
    pool.run_all([partial(loop, a, b, *args) for a, b in step], pool.PARALLEL_MIN_WORK)


@dataclass(frozen=True)
class NumbaKernel:
    """``kernel.Kernel`` on the numba loops: forward and loss-mode backward (edge sums fused, in the loops'
    edge order); output-mode δ stays on numpy's ``passes.backward``."""

    write_min_bytes: float           #: per-example / output-mode results from this size on by ``numba_loops``
    name: ClassVar[str] = "numba"
    own_edge_order: ClassVar[bool] = True

    def forward(self, plan: Plan, x: np.ndarray, n_outputs: int | None = None,
                workspace: np.ndarray | None = None, squares: bool = False) -> PassBuffers:
        """``passes.forward`` on the numba loops: the same buffers, filled the same way (o, f'(z)); with
        ``squares`` also ``buffers.squares`` (where ``passes.pass_buffers`` makes it), in the same pass."""
        jitted = loops()
        buffers = passes.pass_buffers(plan, x, n_outputs, workspace, squares)
        arrays = numba_plan(plan)
        acts, fprime = buffers.acts, buffers.fprime
        fan = _NO_SQUARES if buffers.squares is None else buffers.squares
        args = (plan.n_inputs, arrays.in_ptr, arrays.in_src, arrays.in_w, arrays.bias, arrays.codes, acts, fprime,
                fan)
        for step in _steps(arrays, False, acts.shape[1], thread_count()):
            _run(step, jitted.forward_rows, *args)
        return buffers

    def backward(self, plan: Plan, buffers: PassBuffers, direct: np.ndarray | None) -> None:
        """δ in place of f'(z): loss mode on the loops (``backward_summed`` without sums), output mode on numpy."""
        if direct is None:
            passes.backward(plan, buffers, None)
        else:
            self.backward_summed(plan, buffers, direct, None)

    def sum_slots(self, plan: Plan) -> int:
        """Length of the loops' edge-gradient array: live edges in out-edge order, then one 0 for the rest."""
        return int(numba_plan(plan).out_ptr[-1]) + 1

    def backward_summed(self, plan: Plan, buffers: PassBuffers, direct: np.ndarray,
                        sums: np.ndarray | None) -> np.ndarray:
        """Loss-mode δ in place of f'(z) (``direct``: ∂L/∂o of the outputs, K×B); returns Σ_b δ per node row.

        With ``sums`` (``sum_slots`` long) every edge's Σ_b δ(v)·o[u] is written there in the same pass
        (``numba_loops.backward_rows``; the inputs' out-edges by ``input_grads``), in the loops' out-edge
        order (sums of slabs add in that order; ``file_order`` puts them in file order once).
        """
        jitted = loops()
        arrays = numba_plan(plan)
        acts, deltas = buffers.acts, buffers.deltas
        width, threads = deltas.shape[1], thread_count()
        node_sums = np.zeros(plan.n_nodes, dtype=plan.dtype)
        fused = sums is not None
        n_in = plan.n_inputs
        live = int(arrays.out_ptr[-1])
        grads = sums if sums is not None else np.empty(0, dtype=plan.dtype)
        direct = np.ascontiguousarray(direct, dtype=plan.dtype)
        args = (n_in, arrays.out_ptr, arrays.out_dst, arrays.out_w, arrays.direct_ptr,
                arrays.direct_k, direct, acts, deltas, grads, node_sums, fused)
        for step in _steps(arrays, True, width, threads):
            _run(step, jitted.backward_rows, *args)           # δ(u), and ∂P/∂w(u,v) = Σ_b δ(v)·o[u] when fused
        if fused:
            work = arrays.backward_cost[n_in] * width
            step = (_chunks(arrays.backward_cost, 0, n_in, threads * CHUNKS_PER_THREAD)
                    if threads > 1 and work >= pool.PARALLEL_MIN_WORK else [(0, n_in)])
            _run(step, jitted.input_grads, arrays.out_ptr, arrays.out_dst, acts, deltas, grads)
            grads[live] = 0
        return node_sums

    def edge_sums(self, plan: Plan, buffers: PassBuffers, sums: np.ndarray) -> None:
        """Every edge's Σ_b δ(v)·o[u] from δ already in ``buffers`` into ``sums`` (the loops' order): the
        ``input_grads`` loop over every row, the same products and order as ``backward_summed``'s."""
        arrays = numba_plan(plan)
        rows, width, threads = plan.n_inputs + plan.n_live, buffers.deltas.shape[1], thread_count()
        step = (_chunks(arrays.backward_cost, 0, rows, threads * CHUNKS_PER_THREAD)
                if threads > 1 and arrays.backward_cost[rows] * width >= pool.PARALLEL_MIN_WORK else [(0, rows)])
        _run(step, loops().input_grads, arrays.out_ptr, arrays.out_dst, buffers.acts, buffers.deltas, sums)
        sums[int(arrays.out_ptr[-1])] = 0

    def source_squares(self, plan: Plan, acts: np.ndarray, base: float) -> np.ndarray:
        """``base + Σ_{(u,v)} o(u)²`` per node row (float64, rows × examples): ``numba_loops.source_squares``
        over the live rows in chunks of about equal work (rows that reach no output keep ``base``)."""
        arrays = numba_plan(plan)
        fan = np.full((plan.n_nodes, acts.shape[1]), base)
        live, threads = plan.n_live, thread_count()
        step = (_chunks(arrays.forward_cost, 0, live, threads * CHUNKS_PER_THREAD)
                if threads > 1 and arrays.forward_cost[live] * acts.shape[1] >= pool.PARALLEL_MIN_WORK else [(0, live)])
        _run(step, loops().source_squares, arrays.in_ptr, arrays.in_src, np.ascontiguousarray(acts), fan)
        return fan

    def example_squares(self, plan: Plan, deltas: np.ndarray, fan: np.ndarray) -> np.ndarray:
        """Σ_v δ[v]²·fan[v] per column (float64; ``fan`` a row per node): ``numba_loops.example_squares``, columns
        split between threads."""
        out = np.empty(deltas.shape[1])
        width, threads = deltas.shape[1], thread_count()
        step = pool.thread_spans(width) if threads > 1 and deltas.size >= pool.PARALLEL_MIN_WORK else [(0, width)]
        _run(step, loops().example_squares, deltas, fan, out)
        return out

    def scale_deltas(self, plan: Plan, deltas: np.ndarray, factors: np.ndarray) -> np.ndarray:
        """Each example's δ column times its factor, in place; Σ_b δ per node row after (``numba_loops.scale_rows``)."""
        sums = np.empty(deltas.shape[0], dtype=deltas.dtype)
        step = (pool.thread_spans(deltas.shape[0]) if thread_count() > 1 and deltas.size >= pool.PARALLEL_MIN_WORK
                else [(0, deltas.shape[0])])
        _run(step, loops().scale_rows, deltas, np.ascontiguousarray(factors, dtype=deltas.dtype), sums)
        return sums

    def file_order(self, plan: Plan, sums: np.ndarray) -> np.ndarray:
        """Edge sums in the loops' order (``sum_slots`` long) as a new array in file order: one gather."""
        out = np.empty(plan.edge_file.size, dtype=sums.dtype)
        np.take(sums, numba_plan(plan).file_take, out=out, mode="clip")
        return out

    def write_rows(self, plan: Plan, buffers: PassBuffers, edges_out: np.ndarray, deltas_out: np.ndarray) -> None:
        """Per-example or output-mode rows δ(v)·o[u] and δ (``passes.per_example_results``)."""
        writer = rows_writer(edges_out.nbytes + deltas_out.nbytes, self.write_min_bytes)
        passes.per_example_results(plan, buffers, edges_out, deltas_out, writer)
