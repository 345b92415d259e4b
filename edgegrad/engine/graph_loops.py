"""The graphs of a population's networks checked in one compiled call (numba only): repeated edges, cycles,
and every vertex's topological level, network by network.

Loaded by ``model.population_checks`` through ``kernelcache`` (the numpy path there is the fallback and
gives the same answers). Networks are small, so each is walked alone with scratch arrays the size of the
widest network: its out-edge CSR (a counting sort), then Kahn's walk, which sets the levels (inputs 0, a
node 1 + the highest level it reads from), leaves vertices unreached when there is a cycle, and finds a
repeated (src, dst) pair by stamping each target with the source whose out-edges it is reading. The function is compiled for its one
signature when this module is imported (loaded from numba's on-disk cache after the first time).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from .rowmath import KERNEL_OPTIONS

__all__ = ["check_graphs"]

#: the one signature: sizes (P, 4), vertex and edge offsets (P+1,), src, dst, networks to walk, levels out
_SIGNATURE = "int64(int64[:, ::1], int64[::1], int64[::1], int64[::1], int64[::1], int64, int64[::1])"


def _check_graphs(sizes: np.ndarray, vert_off: np.ndarray, edge_off: np.ndarray, src: np.ndarray,
                  dst: np.ndarray, limit: int, levels: np.ndarray) -> int:
    """Networks [0, limit) in order: the first with a repeated (src, dst) pair or a cycle (``limit`` when none).

    ``levels`` (ΣI+N of the networks walked at least) gets each vertex's level, valid for the networks before
    the one returned. Every edge must stay within its network and not enter an input (checked before).
    """
    widest, most = 1, 1
    for p in range(limit):
        widest = max(widest, sizes[p, 0] + sizes[p, 1])
        most = max(most, sizes[p, 2])
    out_start = np.empty(widest + 1, dtype=np.int64)
    out_dst = np.empty(most, dtype=np.int64)
    indegree = np.empty(widest, dtype=np.int64)
    queue = np.empty(widest, dtype=np.int64)
    stamp = np.full(widest, -1, dtype=np.int64)   # the global source vertex that last reached each target
    for p in range(limit):
        n_in, n_vert, e0, e1, v0 = sizes[p, 0], sizes[p, 0] + sizes[p, 1], edge_off[p], edge_off[p + 1], vert_off[p]
        out_start[:n_vert + 1] = 0
        indegree[:n_vert] = 0
        for j in range(e0, e1):
            out_start[src[j]] += 1
            indegree[dst[j]] += 1
        total = 0
        tail = 0
        for v in range(n_vert):                       # out_start: where each source's out-edges end, for now
            total += out_start[v]
            out_start[v] = total
            levels[v0 + v] = 0 if v < n_in else 1
            if indegree[v] == 0:
                queue[tail] = v
                tail += 1
        out_start[n_vert] = total
        for j in range(e0, e1):                       # filled back to front: out_start ends as the starts
            u = src[j]
            out_start[u] -= 1
            out_dst[out_start[u]] = dst[j]
        head = 0
        while head < tail:                            # Kahn's walk; a repeated pair is met as its source is
            u = queue[head]
            head += 1
            above = levels[v0 + u] + 1
            for k in range(out_start[u], out_start[u + 1]):
                d = out_dst[k]
                if stamp[d] == v0 + u:
                    return p
                stamp[d] = v0 + u
                if levels[v0 + d] < above:
                    levels[v0 + d] = above
                indegree[d] -= 1
                if indegree[d] == 0:
                    queue[tail] = d
                    tail += 1
        if tail < n_vert:                             # a cycle (and any repeated pair among the unreached: the
            return p                                  # network is bad either way)
    return limit


def _compile(fn: Any) -> Any:
    try:
        return njit(_SIGNATURE, cache=True, **KERNEL_OPTIONS)(fn)
    except RuntimeError:                       # "cannot cache function ...: no locator available"
        return njit(_SIGNATURE, cache=False, **KERNEL_OPTIONS)(fn)


check_graphs = _compile(_check_graphs)
