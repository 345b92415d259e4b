"""Summed edge gradients of dense levels: one BLAS product per level, put in file order by one gather.

A dense level's gradients are the block ``δ[level rows] @ o[source rows].T``. When the level's
edges fill the block and sit in the file as one run in row-major order (networks built from
layers), the product is written straight into that run of the result. Otherwise the blocks go to
a scratch buffer and one gather, sorted by file position, moves every dense edge into place; where
the scratch cells are exactly the edges of one run of the file (every block full, no edge twice:
a layered network whose edges are listed in any order), a ``scatter`` (``numba_loops.put_cells``)
may move them instead, reading the scratch in order (measured here: 4.5–5 ms instead of numpy's 5–8.5 for
1.58M float64 cells just written by BLAS into a fresh result; two threads did not speed it up).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

__all__ = ["DenseGrad", "DenseGrads", "DenseEntry", "compile_dense_grads", "dense_grads"]


@dataclass(frozen=True)
class DenseGrad:
    """One dense level's gradient block: δ rows ``[start, stop)`` × activation rows ``cols``."""

    start: int
    stop: int
    cols: slice | np.ndarray
    n_cols: int
    offset: int                      #: first cell in the result (``direct``) or in the scratch buffer
    direct: bool                     #: the block is a row-major run of the result itself


class DenseEntry(NamedTuple):
    """What the plan knows of one dense level (edges in plan order: by row, then column)."""

    level: int                       #: index of the level in the plan
    start: int
    stop: int
    cols: slice | np.ndarray
    n_cols: int
    files: np.ndarray                #: file edge index of each edge
    cells: np.ndarray                #: row * n_cols + col of each edge in the block


def _no_edges() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class DenseGrads:
    """Every dense level of a plan, and the gather that moves scratch blocks into file order."""

    levels: tuple[DenseGrad, ...] = ()
    scratch_cells: int = 0
    files: np.ndarray = field(default_factory=_no_edges)  #: sorted file edges of the scratch blocks
    take: np.ndarray = field(default_factory=_no_edges)   #: their cells in the scratch buffer
    span: tuple[int, int] | None = None               #: ``files`` is exactly this range
    put: np.ndarray = field(default_factory=_no_edges)    #: file edge - span start of each scratch cell, where
    #: every cell is one edge of the span (int32 where it fits); else empty: the gather only


def compile_dense_grads(entries: list[DenseEntry]) -> DenseGrads:
    """Lay out the dense levels: direct where the file holds the block row-major, else in scratch."""
    levels, files, take = [], [], []
    offset = 0
    for e in entries:
        n = e.files.size
        cells = (e.stop - e.start) * e.n_cols
        run = n == cells and bool(np.array_equal(e.cells, np.arange(n)))
        first = int(e.files[0]) if n else 0
        if run and bool(np.array_equal(e.files, np.arange(first, first + n))):
            levels.append(DenseGrad(e.start, e.stop, e.cols, e.n_cols, first, True))
            continue
        levels.append(DenseGrad(e.start, e.stop, e.cols, e.n_cols, offset, False))
        files.append(e.files)
        take.append(e.cells + offset)
        offset += cells
    if not files:
        return DenseGrads(tuple(levels))
    all_files, all_take = np.concatenate(files), np.concatenate(take)
    order = np.argsort(all_files, kind="stable")
    all_files, all_take = all_files[order], all_take[order]
    lo, hi = int(all_files[0]), int(all_files[-1]) + 1
    span = (lo, hi) if hi - lo == all_files.size else None        # no duplicates: a full range
    put = _no_edges()
    if span is not None and all_files.size == offset:     # every cell one edge (edges never repeat: one-to-one)
        put = np.empty(offset, dtype=np.int32 if offset < 2**31 else np.int64)
        put[all_take] = all_files - lo
    return DenseGrads(tuple(levels), offset, all_files, all_take, span, put)


def dense_grads(dense: DenseGrads, acts: np.ndarray, deltas: np.ndarray, out: np.ndarray,
                scatter: Callable[[int, int, np.ndarray, np.ndarray, np.ndarray], None] | None = None) -> None:
    """Fill the dense levels' edges of ``out`` (file order) with Σ_b δ(v)·o[u].

    The gather reads the scratch at random but writes ``out`` in order (measured here: threads do
    not speed it up, it is bound by memory). ``scatter`` (``numba_loops.put_cells``, or None for
    numpy's gather): where ``dense.put`` allows, it moves the cells instead. The same numbers either way.
    """
    scratch = np.empty(dense.scratch_cells, dtype=out.dtype)
    for g in dense.levels:
        rows = g.stop - g.start
        target = out if g.direct else scratch
        block = target[g.offset:g.offset + rows * g.n_cols].reshape(rows, g.n_cols)
        delta_v, o_u = deltas[g.start:g.stop], acts[g.cols]             # the block's targets v, sources u
        np.matmul(delta_v, o_u.T, out=block)                           # ∂P/∂w(u,v) = Σ_b δ(v)·o[u], all at once
    if dense.span is not None and scatter is not None and dense.put.size:
        scatter(0, dense.put.size, scratch, dense.put, out[dense.span[0]:dense.span[1]])
    elif dense.span is not None:
        np.take(scratch, dense.take, out=out[dense.span[0]:dense.span[1]], mode="clip")
    elif dense.files.size:
        out[dense.files] = scratch[dense.take]
