"""Where every vertex of a network goes in a picture: columns by topological level, rows ordered
by barycentre sweeps so edges cross less. Vectorised per level (no Python loop per node or edge)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgegrad.model.network import Network

__all__ = ["Layout", "layout", "draw_levels", "edge_length"]


@dataclass(frozen=True)
class Layout:
    """Column (``level``) and row (``rank``, 0 at the top) of every vertex, inputs first."""

    level: np.ndarray    #: column of every vertex (inputs 0)
    rank: np.ndarray     #: place within its column
    counts: np.ndarray   #: vertices per column

    @property
    def columns(self) -> int:
        """Number of columns."""
        return int(self.counts.size)

    def row(self) -> np.ndarray:
        """Row of every vertex with each column centred on the tallest: rank + (tallest - count) / 2."""
        tallest = int(self.counts.max()) if self.counts.size else 0
        return self.rank + (tallest - self.counts[self.level]) / 2.0


def draw_levels(net: Network) -> np.ndarray:
    """The network's topological levels, with outputs that feed nothing moved to the last column."""
    level = np.asarray(net.levels, dtype=np.int64).copy()
    if net.n_nodes:
        outputs = net.n_inputs + np.asarray(net.output_index, dtype=np.int64)
        feeds = np.zeros(level.size, dtype=bool)
        feeds[np.asarray(net.src)] = True
        sinks = outputs[~feeds[outputs]]
        level[sinks] = level.max()
    return level


def _ranks(level: np.ndarray, key: np.ndarray, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Place within its column of every vertex when each column is sorted by ``key`` (stable)."""
    order = np.lexsort((np.arange(level.size), key, level))
    counts = np.bincount(level, minlength=columns)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.empty(level.size, dtype=np.int64)
    rank[order] = np.arange(level.size) - starts[level[order]]
    return rank, counts


def edge_length(src: np.ndarray, dst: np.ndarray, row: np.ndarray) -> float:
    """Sum of the vertical distances the edges travel: the sweeps' measure of tangle."""
    return float(np.abs(row[src] - row[dst]).sum()) if src.size else 0.0


def layout(net: Network, sweeps: int = 8) -> Layout:
    """Columns by level; rows from alternating down (by in-neighbours) and up (by out-neighbours)
    barycentre sweeps, keeping the ordering whose edges travel least."""
    level = draw_levels(net)
    n = level.size
    columns = int(level.max()) + 1 if n else 0
    src, dst = np.asarray(net.src, dtype=np.int64), np.asarray(net.dst, dtype=np.int64)
    rank, counts = _ranks(level, np.zeros(n), columns)
    best = Layout(level, rank, counts)
    best_length = edge_length(src, dst, best.row())
    if not src.size:
        return best
    row = best.row()
    by_col = np.argsort(level, kind="stable")
    col_start = np.searchsorted(level[by_col], np.arange(columns + 1))
    # edges grouped by the column of the end a sweep moves: dst going down, src going up
    groups = {}
    for down, here, there in ((True, dst, src), (False, src, dst)):
        order = np.argsort(level[here], kind="stable")
        groups[down] = (here[order], there[order], np.searchsorted(level[here][order], np.arange(columns + 1)))
    local = np.zeros(n, dtype=np.int64)
    for sweep in range(sweeps):
        down = sweep % 2 == 0
        here, there, starts = groups[down]
        for col in (range(1, columns) if down else range(columns - 2, -1, -1)):
            members = by_col[col_start[col]:col_start[col + 1]]
            if members.size < 2:
                continue
            a, b = starts[col], starts[col + 1]
            local[members] = np.arange(members.size)
            at = local[here[a:b]]
            pull = np.bincount(at, weights=row[there[a:b]], minlength=members.size)
            degree = np.bincount(at, minlength=members.size)
            key = np.where(degree > 0, pull / np.maximum(degree, 1), row[members])
            order = members[np.argsort(key, kind="stable")]
            row[order] = np.sort(row[members])
        rank, _ = _ranks(level, row, columns)
        candidate = Layout(level, rank, counts)
        row = candidate.row()
        length = edge_length(src, dst, row)
        if length < best_length:
            best, best_length = candidate, length
    return best
