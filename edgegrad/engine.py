"""Forward pass and δ-backpropagation over a compiled plan, vectorised over the batch and levels.

Buffers are node-major (one row per vertex, one column per example) so every level is a row
block: ``acts`` holds o for every vertex, ``deltas`` holds f'(z) after the forward pass and is
turned into δ in place by the backward pass, level by level from the last:

    δ(v) = f_v'(z[v]) · (∂P/∂o[v]|direct + Σ_c w(v,c) δ(c))        ∂P/∂w(u,v) = δ(v) · o[u]

In output mode the delta buffer has K columns per example (one backward pass per output, all
at once). Independent row chunks of a level run on a small thread pool (numpy and scipy release
the GIL in these kernels).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, NamedTuple

import numpy as np

from .memory import edge_chunk_size
from .plan import Kernel, Level, Plan

__all__ = ["Pass", "NodeValues", "forward", "backward", "summed_edge_grads", "per_example_edge_grads",
           "plan_node_values"]


def _thread_count() -> int:
    """Threads for the kernels: EDGEGRAD_THREADS, else the CPUs this process may run on."""
    configured = int(os.environ.get("EDGEGRAD_THREADS", "0") or 0)
    if configured > 0:
        return configured
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


_pool: ThreadPoolExecutor | None = None


def _get_pool() -> ThreadPoolExecutor | None:
    global _pool
    if _pool is None and _thread_count() > 1:
        _pool = ThreadPoolExecutor(max_workers=_thread_count(), thread_name_prefix="edgegrad")
    return _pool


def _forget_pool() -> None:
    """A forked child has no pool threads: start a fresh pool on first use."""
    global _pool
    _pool = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


#: below this many multiply-adds a handful of tasks run inline: a thread hand-off costs ~20 µs
PARALLEL_MIN_WORK = 200_000


def _spans(n: int, step: int) -> list[tuple[int, int]]:
    """[0, n) cut into consecutive spans of ``step``."""
    return [(a, min(a + step, n)) for a in range(0, n, step)]


def _run_all(tasks: Iterable[Callable[[], None]], work: int) -> None:
    """Run independent tasks on the pool; inline when there is one thread, one task or little ``work``."""
    tasks = list(tasks)
    pool = _get_pool() if len(tasks) > 1 and work >= PARALLEL_MIN_WORK else None
    if pool is None:
        for task in tasks:
            task()
        return
    for future in [pool.submit(_quietly, task) for task in tasks]:
        future.result()


def _quietly(task: Callable[[], None]) -> None:
    """Run a task with float overflow left to the caller's finiteness check (errstate is per thread)."""
    with np.errstate(over="ignore", invalid="ignore"):
        task()


class Pass(NamedTuple):
    """The buffers of one forward (+ backward) pass."""

    acts: np.ndarray     #: (I+N, B) o of every vertex, plan rows
    deltas: np.ndarray   #: (N, B) or (N, K, B): f'(z) after forward, δ after backward
    fprime: np.ndarray   #: (N, B) f'(z); the same array as ``deltas`` in loss mode


class NodeValues(NamedTuple):
    """Per-example values of every node in file order, for explanations and checks."""

    z: np.ndarray        #: B×N pre-activations
    o: np.ndarray        #: B×(I+N) outputs of every vertex (inputs first)
    fprime: np.ndarray   #: B×N f'(z)


def _product(kernel: Kernel, source: np.ndarray) -> np.ndarray:
    """``kernel.matrix @ source[kernel.cols]``; sparse kernels read a row prefix without copying it."""
    return kernel.matrix @ source[kernel.cols]


Piece = tuple[int, int, "Kernel | np.ndarray | None"]


def _pieces(kernels: tuple[Kernel, ...], cuts: list[tuple[int, int]], source: np.ndarray) -> list[Piece]:
    """Split a level's product into independent row pieces.

    A dense kernel runs once here (BLAS threads on its own) and the pieces slice its result by
    ``cuts``; sparse kernels are the pieces themselves; no kernel means the product is zero.
    """
    if kernels and kernels[0].dense:
        full = _product(kernels[0], source)
        return [(lo, hi, full) for lo, hi in cuts]
    if not kernels:
        return [(lo, hi, None) for lo, hi in cuts]
    return [(k.lo, k.hi, k) for k in kernels]


def _work(pieces: list[Piece], width: int) -> int:
    """Rough multiply-add count of a level's pieces."""
    total = 0
    for lo, hi, what in pieces:
        total += (what.matrix.nnz if isinstance(what, Kernel) and not what.dense else hi - lo) * width
    return total


def _evaluate(piece: Piece, source: np.ndarray) -> np.ndarray:
    """The product rows of one piece, as a fresh (or exclusively owned) array."""
    lo, hi, what = piece
    if what is None:
        return np.zeros((hi - lo, source.shape[1]), dtype=source.dtype)
    if isinstance(what, np.ndarray):
        return what[lo:hi]
    return _product(what, source)


def _forward_level(plan: Plan, level: Level, acts: np.ndarray, fprime: np.ndarray,
                   z_out: np.ndarray | None) -> None:
    """z = W_in·o + bias and o = f(z), f'(z) for one level, one piece per thread task."""
    first_row = plan.n_inputs + level.start

    def activate(piece: Piece) -> None:
        lo, hi, _ = piece
        z = _evaluate(piece, acts)
        z += level.bias[lo:hi]
        for block in level.blocks:
            a, b = max(lo, block.lo), min(hi, block.hi)
            if a >= b:
                continue
            zb = z[a - lo:b - lo]
            o = block.activation.forward(zb)
            acts[first_row + a:first_row + b] = o
            fprime[level.start + a:level.start + b] = block.activation.derivative(zb, o)
            if z_out is not None:
                z_out[level.start + a:level.start + b] = zb

    cuts = [(block.lo, block.hi) for block in level.blocks]
    pieces = _pieces(level.forward, cuts, acts)
    _run_all((lambda p=p: activate(p) for p in pieces), _work(pieces, acts.shape[1]))


def forward(plan: Plan, x: np.ndarray, n_outputs: int | None = None,
            keep_z: bool = False) -> tuple[Pass, np.ndarray | None]:
    """Forward pass for inputs ``x`` (B×I).

    The delta buffer is (N, B) for loss mode (``n_outputs`` None) and (N, K, B) for output mode.
    """
    batch = x.shape[0]
    acts = np.empty((plan.n_inputs + plan.n_nodes, batch), dtype=plan.dtype)
    acts[:plan.n_inputs] = x.T
    if n_outputs is None:
        deltas = np.empty((plan.n_nodes, batch), dtype=plan.dtype)
        fprime = deltas
    else:
        deltas = np.empty((plan.n_nodes, n_outputs, batch), dtype=plan.dtype)
        fprime = np.empty((plan.n_nodes, batch), dtype=plan.dtype)
    z = np.empty((plan.n_nodes, batch), dtype=plan.dtype) if keep_z else None
    for level in plan.levels:
        _forward_level(plan, level, acts, fprime, z)
    return Pass(acts, deltas, fprime), z


def backward(plan: Plan, run: Pass, direct: np.ndarray | None) -> None:
    """Turn f'(z) in ``run.deltas`` into δ, level by level from the last.

    ``direct`` is ∂L/∂o of the outputs, (K, B), in loss mode. In output mode (a 3-D delta buffer)
    it is ignored: output k gets a direct term of 1 in its own column block.
    """
    deltas = run.deltas
    output_mode = deltas.ndim == 3
    flat = deltas.reshape(plan.n_nodes, -1)
    out_rows = plan.output_rows
    for level in reversed(plan.levels):
        direct_rows = [(k, int(out_rows[k]) - level.start) for k in
                       np.flatnonzero((out_rows >= level.start) & (out_rows < level.stop)).tolist()]

        def pull(piece: Piece, level: Level = level, direct_rows: list = direct_rows) -> None:
            lo, hi, _ = piece
            g = _evaluate(piece, flat)
            for k, r in direct_rows:
                if lo <= r < hi:
                    if output_mode:
                        g.reshape(hi - lo, -1, deltas.shape[2])[r - lo, k] += 1
                    else:
                        g[r - lo] += direct[k]
            rows = slice(level.start + lo, level.start + hi)
            if output_mode:
                deltas[rows] = g.reshape(hi - lo, -1, deltas.shape[2]) * run.fprime[rows][:, None, :]
            else:
                deltas[rows] *= g

        pieces = _pieces(level.backward, [(0, level.stop - level.start)], flat)
        _run_all((lambda p=p: pull(p) for p in pieces), _work(pieces, flat.shape[1]))


def summed_edge_grads(plan: Plan, run: Pass) -> np.ndarray:
    """Σ_b δ(v)·o[u] for every edge, in plan edge order (loss mode without per_example)."""
    acts, deltas = run.acts, run.deltas
    grads = np.empty(plan.edge_src.size, dtype=plan.dtype)
    for level in plan.levels:
        if level.dense_grad is None:
            continue
        positions, r, c, cols = level.dense_grad
        block = deltas[level.start:level.stop] @ acts[cols].T
        grads[positions] = block[r, c]
    sparse, src, dst = plan.sparse_edges, plan.edge_src, plan.edge_dst

    def chunk(a: int, b: int) -> None:
        pos = sparse[a:b]
        grads[pos] = np.einsum("ij,ij->i", acts[src[pos]], deltas[dst[pos]])

    step = edge_chunk_size(acts.shape[1] * acts.itemsize)
    _run_all((lambda c=c: chunk(*c) for c in _spans(sparse.size, step)), sparse.size * acts.shape[1])
    return grads


def per_example_edge_grads(plan: Plan, run: Pass, out: np.ndarray) -> None:
    """Fill ``out`` (B×E or B×K×E, file edge order) with δ(v)·o[u] per example (and per output)."""
    acts, deltas = run.acts, run.deltas
    src, dst, file_index = plan.edge_src, plan.edge_dst, plan.edge_file
    n_edges = src.size

    def chunk(a: int, b: int) -> None:
        o = acts[src[a:b]]
        d = deltas[dst[a:b]]
        if d.ndim == 3:
            prod = d * o[:, None, :]                      # (e, K, B)
            out[:, :, file_index[a:b]] = prod.transpose(2, 1, 0)
        else:
            out[:, file_index[a:b]] = (d * o).T

    step = edge_chunk_size(deltas[0].size * deltas.itemsize)     # one edge's product: K×B or B numbers
    _run_all((lambda c=c: chunk(*c) for c in _spans(n_edges, step)), out.size)


def plan_node_values(plan: Plan, x: np.ndarray) -> NodeValues:
    """z, o and f'(z) of every node for inputs ``x``, in file order (B×N, B×(I+N), B×N)."""
    run, z = forward(plan, x, keep_z=True)
    n_in = plan.n_inputs
    o = np.concatenate([run.acts[:n_in], run.acts[n_in + plan.node_row]]).T
    return NodeValues(z[plan.node_row].T.copy(), o.copy(), run.fprime[plan.node_row].T.copy())

