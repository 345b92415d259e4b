"""Array-level graph checks and topological levels, vectorised for million-edge networks."""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInput

__all__ = ["check_edges", "edge_keys", "topological_levels", "kahn_levels"]


def edge_keys(src: np.ndarray, dst: np.ndarray, n_vertices: int) -> np.ndarray:
    """Every edge as one sortable integer ``src * n_vertices + dst``, sorted (src-major)."""
    return np.sort(src.astype(np.int64) * n_vertices + dst)


def check_edges(src: np.ndarray, dst: np.ndarray, n_inputs: int, ids: list[str] | tuple[str, ...]) -> np.ndarray:
    """Reject edges into inputs, self-loops and repeated (src, dst) pairs, naming the first one.

    Returns the sorted edge keys (``edge_keys``) so ``topological_levels`` need not sort again.
    """
    n_vertices = len(ids)
    into_input = np.flatnonzero(dst < n_inputs)
    if into_input.size:
        e = int(into_input[0])
        raise InvalidInput(f"edges[{e}].dst: '{ids[dst[e]]}' is an input and cannot have incoming edges")
    loops = np.flatnonzero(src == dst)
    if loops.size:
        e = int(loops[0])
        raise InvalidInput(f"cycle: {ids[src[e]]} -> {ids[src[e]]}", field=f"edges[{e}]")
    keys = edge_keys(src, dst, n_vertices)
    if keys.size >= 2 and np.any(keys[1:] == keys[:-1]):
        _raise_first_duplicate(src, dst, n_vertices, ids)
    return keys


def _raise_first_duplicate(src: np.ndarray, dst: np.ndarray, n_vertices: int,
                           ids: list[str] | tuple[str, ...]) -> None:
    """Name the earliest edge that repeats an earlier (src, dst) pair, and that earlier edge."""
    key = src.astype(np.int64) * n_vertices + dst
    order = np.argsort(key, kind="stable")
    repeated = np.flatnonzero(key[order][1:] == key[order][:-1])
    later = order[repeated + 1]
    first_dup = int(later.min())
    earlier = int(order[repeated[np.argmin(later)]])
    raise InvalidInput(
        f"edges[{first_dup}]: duplicate edge {ids[src[first_dup]]} -> {ids[dst[first_dup]]}"
        f" (same as edges[{earlier}])"
    )


def topological_levels(src: np.ndarray, dst: np.ndarray, n_vertices: int, n_inputs: int,
                       ids: list[str] | tuple[str, ...], keys: np.ndarray | None = None) -> np.ndarray:
    """Level of every vertex: inputs 0, a computed node 1 + the highest level it reads from.

    ``keys`` may pass ``edge_keys(src, dst, n_vertices)`` when already computed.
    Raises ``InvalidInput("cycle: a -> b -> a")`` with an actual cycle when there is one.
    """
    level = np.zeros(n_vertices, dtype=np.int64)
    level[n_inputs:] = 1
    indegree, done = kahn_levels(src, dst, level, keys)
    if done < n_vertices:
        raise InvalidInput("cycle: " + " -> ".join(_find_cycle(src, dst, indegree, ids)), field="edges")
    return level


def kahn_levels(src: np.ndarray, dst: np.ndarray, level: np.ndarray,
                keys: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Raise ``level`` (each vertex's starting level, updated in place) to 1 + the highest level each
    vertex reads from, walking the graph frontier by frontier (Kahn's algorithm, vectorised).

    Returns (the in-degrees left, vertices reached): fewer reached than vertices means a cycle, and the
    vertices left with in-degree > 0 are on or behind one. Works on several disjoint graphs at once.
    """
    n_vertices = level.size
    indegree = np.bincount(dst, minlength=n_vertices)
    if keys is None:
        keys = edge_keys(src, dst, n_vertices)
    out_dst = keys % n_vertices                      # out-neighbours, grouped by source vertex
    out_start = np.zeros(n_vertices + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=n_vertices), out=out_start[1:])
    frontier = np.flatnonzero(indegree == 0)
    slot = np.empty(n_vertices, dtype=np.int64)      # scratch to keep one copy of each ready child
    done = 0
    while frontier.size:
        done += frontier.size
        starts, stops = out_start[frontier], out_start[frontier + 1]
        counts = stops - starts
        total = int(counts.sum())
        if not total:
            break
        # positions of every out-edge of the frontier, without a Python loop per vertex
        offsets = np.repeat(stops - counts.cumsum(), counts) + np.arange(total)
        children = out_dst[offsets]
        np.maximum.at(level, children, np.repeat(level[frontier] + 1, counts))
        np.subtract.at(indegree, children, 1)
        ready = children[indegree[children] == 0]    # a child once per edge from the frontier
        positions = np.arange(ready.size)
        slot[ready] = positions                      # whichever copy's write lands, exactly one matches
        frontier = ready[slot[ready] == positions]
    return indegree, done


def _find_cycle(src: np.ndarray, dst: np.ndarray, indegree: np.ndarray,
                ids: list[str] | tuple[str, ...]) -> list[str]:
    """Walk backwards through vertices Kahn's algorithm could not remove until one repeats."""
    stuck = indegree > 0
    keep = stuck[src] & stuck[dst]
    parent: dict[int, int] = {}
    for s, d in zip(src[keep].tolist(), dst[keep].tolist()):
        parent.setdefault(d, s)
    v = int(np.flatnonzero(stuck)[0])
    seen: dict[int, int] = {}
    path: list[int] = []
    while v not in seen:
        seen[v] = len(path)
        path.append(v)
        v = parent[v]
    cycle = path[seen[v]:][::-1]
    return [ids[i] for i in cycle + [cycle[0]]]
