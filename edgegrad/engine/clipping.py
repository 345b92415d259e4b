"""Per-example gradient norms and clipped sums (DP-SGD's step) without a B×E array.

Example b's own gradient ``r_b`` (of its ``reduction="sum"`` loss term) has the entries δ_b(v)·o_b(u)
for every edge (u, v) and δ_b(v) for every bias, so

    ‖r_b‖² = Σ_v δ_b(v)² · (1 + Σ_{(u,v)∈E} o_b(u)²)

one pass over the edges with O(B·N) memory (docs/math.md, section 8). The pass's δ already carry the
loss's mean factor ``s`` (δ = s·r), so ``norms = ‖δ_b‖/s``. Clipping scales example b's δ column by
``c_b = min(1, C / norms[b])`` before the usual loss-mode gather: Σ_b c_b·δ_b(v)·o_b(u), no second
backward pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp

from ..errors import InvalidInput
from .plan import Plan

__all__ = ["check_clipping", "example_norms", "clip_factors", "source_squares", "fill_squares", "block_squares",
           "weighed_squares",
           "NORM_BLOCK_BYTES"]

#: the norm pass works on blocks of examples whose squared activations and in-edge sums fit this
NORM_BLOCK_BYTES = 32 << 20


def check_clipping(loss: str | None, norms: Any, clip_norm: Any) -> float | None:
    """Check ``norms`` and ``clip_norm`` of a request; ``clip_norm`` as a float (None: no clipping)."""
    if not isinstance(norms, (bool, np.bool_)):
        raise InvalidInput(f"norms: expected true or false, got {norms!r}")
    if clip_norm is not None:
        if isinstance(clip_norm, (bool, np.bool_)) or not isinstance(clip_norm, (int, float, np.integer, np.floating)):
            raise InvalidInput(f"clip_norm: expected a number > 0, got {clip_norm!r}")
        if not math.isfinite(float(clip_norm)) or float(clip_norm) <= 0:
            raise InvalidInput(f"clip_norm: must be finite and > 0, got {float(clip_norm)}")
    if loss is None and (norms or clip_norm is not None):
        what = "clip_norm" if clip_norm is not None else "norms"
        raise InvalidInput(f"{what}: per-example norms and clipping need a loss (pass loss='mse', 'bce' or"
                           " 'softmax_ce' and targets)")
    return None if clip_norm is None else float(clip_norm)


#: a level's in-edges form a dense block (one BLAS product) when they fill at least this share of it
DENSE_SHARE = 0.25


class _FanBlock(NamedTuple):
    """Node rows ``[start, stop)`` and how Σ_{(u,v)} o_b(u)² is summed for them over source rows ``cols``."""

    start: int
    stop: int
    kind: str                         #: "full" (every row reads every col once), "dense" (BLAS) or "sparse"
    matrix: Any                       #: counts of edges (v, u): an ndarray ("dense") or CSR ("sparse")
    cols: np.ndarray | slice          #: a slice where they are a run of rows


def _fan_blocks(plan: Plan) -> list[_FanBlock]:
    """The in-edge incidence of the plan's nodes, level by level, cached on the plan: a fully connected
    level is one column sum, a dense one one BLAS product, the rest a sparse product."""
    found = plan.__dict__.get("_fan_blocks")
    if found is None:
        n_rows = plan.n_inputs + plan.n_nodes
        ones = np.ones(plan.file_src.size, dtype=np.float64)
        incidence = sp.csr_matrix((ones, (plan.file_dst, plan.file_src)), shape=(plan.n_nodes, n_rows))
        incidence.sum_duplicates()   # a repeated edge counts twice: two entries of r_b, each δ·o
        found = []
        for level in plan.levels:
            part = incidence[level.start:level.stop]
            cols = np.unique(part.indices)
            if cols.size == 0:
                continue
            cells = (level.stop - level.start) * cols.size
            if part.nnz == cells and np.all(part.data == 1.0):
                run = int(cols[-1]) - int(cols[0]) + 1 == cols.size
                found.append(_FanBlock(level.start, level.stop, "full", None,
                                       slice(int(cols[0]), int(cols[-1]) + 1) if run else cols))
            elif part.nnz >= DENSE_SHARE * cells:
                found.append(_FanBlock(level.start, level.stop, "dense", part[:, cols].toarray(), cols))
            else:
                found.append(_FanBlock(level.start, level.stop, "sparse", part[:, cols].tocsr(), cols))
        plan.__dict__["_fan_blocks"] = found
    return found


def source_squares(plan: Plan, o2: np.ndarray, base: float = 1.0) -> np.ndarray:
    """``base + Σ_{(u,v)∈E} o(u)²`` for every node row v (rows × columns of ``o2``, the squared activations)."""
    fan = np.full((plan.n_nodes, o2.shape[1]), base)
    for block in _fan_blocks(plan):
        rows = fan[block.start:block.stop]
        src = o2[block.cols]
        if block.kind == "full":
            rows += src.sum(axis=0)
        else:
            rows += block.matrix @ src
    return fan


def _segments(plan: Plan) -> list[tuple[int, int, bool]]:
    """Node rows [0, N) cut into runs ``(start, stop, full)``: each fully connected level (its rows share one
    sum of the sources' squares) and the runs of other rows between them; cached on the plan."""
    found = plan.__dict__.get("_fan_segments")
    if found is None:
        found, at = [], 0
        for block in _fan_blocks(plan):
            if block.kind == "full":
                if block.start > at:
                    found.append((at, block.start, False))
                found.append((block.start, block.stop, True))
                at = block.stop
        if at < plan.n_nodes:
            found.append((at, plan.n_nodes, False))
        plan.__dict__["_fan_segments"] = found
    return found


def fill_squares(plan: Plan, acts: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``1 + Σ_{(u,v)∈E} o(u)²`` per node row into ``out`` (N × columns of ``acts``, float64), as ``block_squares``
    reads it: a fully connected level's one sum (a dot per column) in its first row only, its other rows
    untouched; every other row its own (the other levels square o once)."""
    o2 = None
    for start, stop, full in _segments(plan):
        if not full:
            out[start:stop] = 1.0
    for block in _fan_blocks(plan):
        if block.kind == "full":
            src = acts[block.cols]
            np.einsum("ub,ub->b", src, src, dtype=np.float64, out=out[block.start])
            out[block.start] += 1.0
            continue
        if o2 is None:
            o2 = np.square(acts, dtype=np.float64)
        out[block.start:block.stop] += block.matrix @ o2[block.cols]
    return out


def block_squares(plan: Plan, deltas: np.ndarray, fan: np.ndarray) -> np.ndarray:
    """Σ_v δ[v]²·fan[v] per column (float64) from ``fill_squares``'s ``fan``: run after run of ``_segments``, a
    fully connected level's rows as its one fan row times Σ_v δ[v]², row after row within a run (each
    column's order fixed). One read of δ, no N×B temporaries."""
    total = np.zeros(deltas.shape[1])
    for start, stop, full in _segments(plan):
        d = deltas[start:stop]
        if full:
            part = np.einsum("vb,vb->b", d, d, dtype=np.float64)
            total += np.multiply(part, fan[start], out=part)
        else:
            total += np.einsum("vb,vb,vb->b", d, d, fan[start:stop], dtype=np.float64)
    return total


def weighed_squares(deltas: np.ndarray, fan: np.ndarray) -> np.ndarray:
    """Σ_v δ[v]²·fan[v] per column, float64, summed row after row (each column's order fixed): one pass, no
    N×B temporaries (the same numbers as squaring, multiplying, then summing along the rows)."""
    return np.einsum("vb,vb,vb->b", deltas, deltas, fan, dtype=np.float64)


def example_norms(plan: Plan, acts: np.ndarray, deltas: np.ndarray, scale: float, row_offset: int = 0,
                  squares_of: Callable[[Plan, np.ndarray, float], np.ndarray] | None = None,
                  fan: np.ndarray | None = None,
                  weigh: Callable[[Plan, np.ndarray, np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """``‖r_b‖₂`` (float64, one per column of ``deltas``) over every edge and bias entry; ``scale`` is
    the loss's mean factor carried by ``deltas``. ``fan``: ``1 + Σ_{(u,v)} o_b(u)²`` of the node rows and
    columns where the forward pass made it (``PassBuffers.squares``, laid out as the kernel's
    ``example_squares`` reads it), then one ``weigh(plan, deltas, fan)`` (Σ_v δ²·fan per column; default
    ``block_squares``, numpy's); else ``squares_of(plan, acts, base)`` sums the sources' squares per node (a
    kernel's ``source_squares``; default numpy's) in blocks of examples. A norm past float64's range is
    refused by row."""
    squares_of = squares_of or (lambda p, a, base: source_squares(p, np.square(a, dtype=np.float64), base))
    batch = deltas.shape[1]
    with np.errstate(over="ignore", invalid="ignore"):
        if fan is not None:
            squares = (weigh or block_squares)(plan, deltas, fan)
        else:
            step = max(1, min(batch, NORM_BLOCK_BYTES // (8 * (acts.shape[0] + 2 * plan.n_nodes))))
            squares = np.empty(batch)
            for a in range(0, batch, step):
                b = min(a + step, batch)
                squares[a:b] = weighed_squares(deltas[:, a:b], squares_of(plan, acts[:, a:b], 1.0))
        norms = np.sqrt(squares, out=squares)
        norms /= scale
    bad = np.flatnonzero(~np.isfinite(norms))
    for j in bad:  # squares past the range: again with each example's δ and o scaled by their largest
        norms[j] = _scaled_norm(plan, acts[:, j], deltas[:, j], scale, squares_of)
        if not math.isfinite(norms[j]):
            raise InvalidInput(f"norms[{row_offset + int(j)}]: the gradient norm of inputs row {row_offset + int(j)}"
                               " overflows float64 (its δ · o too large)")
    return norms


def _scaled_norm(plan: Plan, o: np.ndarray, d: np.ndarray, scale: float,
                 squares_of: Callable[[Plan, np.ndarray, float], np.ndarray]) -> float:
    """One example's norm computed as m_d·m_o·sqrt(Σ_v (δ/m_d)²·(1/m_o² + Σ (o/m_o)²))."""
    o, d = o.astype(np.float64), d.astype(np.float64)
    m_d = float(np.max(np.abs(d))) or 1.0
    m_o = max(1.0, float(np.max(np.abs(o))))
    fan = squares_of(plan, (o / m_o)[:, None], 1.0 / (m_o * m_o))[:, 0]
    with np.errstate(over="ignore"):
        return m_d * m_o * math.sqrt(float(np.dot(np.square(d / m_d), fan))) / scale


def clip_factors(norms: np.ndarray, clip_norm: float) -> np.ndarray:
    """``c_b = min(1, C / norms[b])``, and 1 where ``norms[b]`` is 0."""
    with np.errstate(divide="ignore"):
        return np.minimum(1.0, clip_norm / norms)
