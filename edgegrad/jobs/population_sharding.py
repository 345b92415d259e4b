"""How a population job is cut into shards: consecutive networks, each shard within a worker's memory budget,
about ``shard_seconds`` of work and about SHARD_RESULT_BYTES of result (so results stream while later shards run),
and at least one part per worker of the fleet where the work is worth cutting; and, where one network's rows alone
would pass those limits (or ``shard_rows`` asks for it), rows too.

Memory is estimated per network (result arrays, packing of its edges and nodes, its rows) plus the
kernel's per-thread chunk buffers once; a network that alone would not fit, even a row at a time, is refused
with RESOURCE_EXHAUSTED naming ``nets[i]``. With row shards every group of networks is cut into row shards of
the same ``R`` rows (``wire.population_shards``): a group's networks all have as many row shards (a group
ends where that count changes), and in loss mode each row shard's partial sums wait in Redis for the fold.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..engine.memory import thread_count
from ..engine.population_results import CHUNK_BYTES, OUTPUTS, SUMS
from ..errors import ResourceExhausted
from ..v1 import job_pb2
from ..wire.population import element_counts
from .sharding import MIN_SHARD_ROWS, PARTIAL_SUMS_BYTES, SHARD_RESULT_BYTES, WORK_PER_SECOND

__all__ = ["population_shards", "PopulationShards", "PACK_BYTES_PER_ITEM", "SPLIT_WORK"]

#: bytes the packing of one edge or node takes on a worker (plans, CSR, file-order maps), an upper bound
PACK_BYTES_PER_ITEM = 96
#: work (rows × (edges + nodes)) below which a part is not cut off for another worker: a few milliseconds of the
#: engine, about what a shard's own round trips through Redis cost
SPLIT_WORK = 2.0e6
_LIMIT = "EDGEGRAD_WORKER_MEMORY_BYTES"


class PopulationShards(NamedTuple):
    """The first network of each shard (a group's repeated for each of its row shards), and rows per row shard
    (0: none)."""

    starts: list[int]
    rows: int


def _result_bytes(sizes: np.ndarray, mode: int, norms: bool, itemsize: int) -> np.ndarray:
    counts = element_counts(sizes, mode, norms)
    return sum((c * (8 if f == job_pb2.RESULT_FIELD_LOSS else itemsize) for f, c in counts.items()),
               np.zeros(sizes.shape[0], dtype=np.int64))


def population_shards(sizes: np.ndarray, inputs: np.ndarray, mode: int, norms: bool, itemsize: int, requested: int,
                      requested_rows: int, budget: int, seconds: float, max_shards: int,
                      workers: int = 1) -> PopulationShards:
    """The shards of a population: ``sizes`` int64 P×4 (B, K, E, N); ``inputs``: I of each network; ``requested``:
    networks per shard, ``requested_rows``: rows per row shard (0: the service picks each); ``workers``: the workers
    that take shards (the service's choice gives each of them a part, where the work is worth cutting)."""
    b, k, e, n = (sizes[:, i].astype(np.int64) for i in range(4))
    room = budget - thread_count() * CHUNK_BYTES
    work_row = np.maximum(e + n, 1) * np.where(mode == OUTPUTS, k, 1)

    def memory(rows: np.ndarray) -> np.ndarray:
        capped = sizes.copy()
        capped[:, 0] = rows
        return _result_bytes(capped, mode, norms, itemsize) + (e + n + inputs) * PACK_BYTES_PER_ITEM \
            + rows * (inputs + k) * 8

    rows, most = int(requested_rows), int(b.max())
    if not rows:
        rows = _auto_rows(b, memory, work_row, room, budget, max(1.0, seconds * WORK_PER_SECOND))
        rows = -(-most // -(-most // rows)) if rows else 0   # as many row shards as that takes, of even sizes
    if rows >= most:
        rows = 0
    capped = np.minimum(b, rows) if rows else b
    need = memory(capped)
    over = np.flatnonzero(need > room)
    if over.size:
        p = int(over[0])
        raise ResourceExhausted(f"nets[{p}]: needs about {int(need[p])} bytes of worker memory with its rows, over"
                                f" the limit of {budget} ({_LIMIT}); use fewer rows per shard (shard_rows) or"
                                " per_example=False")
    blocks = -(-b // rows) if rows else np.ones_like(b)
    cuts = np.flatnonzero(np.diff(blocks)) + 1        # a group's networks have as many row shards
    if requested:
        starts = sorted(set(range(0, b.size, int(requested))) | set(cuts.tolist()))
        for a, z in zip(starts, starts[1:] + [b.size]):
            used = int(need[a:z].sum())
            if used > room:
                raise ResourceExhausted(f"shard_networks: networks {a}..{z - 1} need about {used} bytes of worker"
                                        f" memory, over the limit of {budget} ({_LIMIT})")
    else:
        limits = ((capped * work_row, max(1.0, seconds * WORK_PER_SECOND)), (need, float(room)),
                  (_result_bytes(_with_rows(sizes, capped), mode, norms, itemsize), float(SHARD_RESULT_BYTES)))
        starts = _groups(limits, set(cuts.tolist()), b.size)
        if not rows:
            starts = _spread(starts, capped * work_row, workers)
    if not requested and not rows and len(starts) > max_shards:  # fewer, larger shards, as many as the limit
        per = -(-b.size // max_shards)
        starts = list(range(0, b.size, per))
        if any(int(need[a:a + per].sum()) > room for a in starts):
            raise ResourceExhausted(f"nets: {b.size} networks need more than {max_shards} shards within {budget}"
                                    f" bytes each ({_LIMIT}, EDGEGRAD_MAX_SHARDS)")
    shards = [a for a in starts for _ in range(int(blocks[a]))]
    what = "shard_networks" if requested else "nets"
    if len(shards) > max_shards:
        raise ResourceExhausted(f"{what}: {b.size} networks of up to {int(b.max())} rows make {len(shards)} shards,"
                                f" over the limit of {max_shards} (EDGEGRAD_MAX_SHARDS); use more networks or rows"
                                " per shard")
    if rows and mode == SUMS:  # each row shard's partial sums wait in Redis for its group's fold
        ends = starts[1:] + [b.size]
        held = sum(int(blocks[a]) * int((e[a:z] + n[a:z]).sum() * itemsize + 8 * (z - a)) for a, z in zip(starts, ends))
        if held > PARTIAL_SUMS_BYTES:
            raise ResourceExhausted(f"shard_rows: {rows} rows a shard leave about {held} bytes of partial sums, over"
                                    f" the Redis room of {PARTIAL_SUMS_BYTES}; use more rows per shard")
    return PopulationShards(shards, rows)


def _with_rows(sizes: np.ndarray, rows: np.ndarray) -> np.ndarray:
    out = sizes.copy()
    out[:, 0] = rows
    return out


def _auto_rows(b: np.ndarray, memory, work_row: np.ndarray, room: int, budget: int, work_limit: float) -> int:
    """Rows per row shard where some network alone passes the memory room, or (with enough rows to cut) the
    time budget; 0 where every network fits whole."""
    whole = memory(b)
    slow = (b * work_row > work_limit) & (b >= 2 * MIN_SHARD_ROWS)
    if not (whole > room).any() and not slow.any():
        return 0
    fixed = memory(np.zeros_like(b))
    per_row = np.maximum(memory(np.ones_like(b)) - fixed, 1)
    spare = room - fixed
    if (spare < per_row).any():
        p = int(np.argmax(spare < per_row))
        raise ResourceExhausted(f"nets[{p}]: needs about {int(fixed[p] + per_row[p])} bytes of worker memory for"
                                f" one row, over the limit of {budget} ({_LIMIT}); use per_example=False or a"
                                " smaller network")
    by_memory = int((spare // per_row).min())
    by_time = max(MIN_SHARD_ROWS, int(work_limit // int(work_row.max())))
    return max(1, min(by_memory, by_time))


def _spread(starts: list[int], work: np.ndarray, workers: int) -> list[int]:
    """``starts`` with more cuts where fewer groups than ``workers`` would leave some idle: as many parts of about
    equal work as there are workers (each of SPLIT_WORK at least, one network at least)."""
    total = float(work.sum())
    parts = min(workers, work.size, int(total // SPLIT_WORK))
    if parts <= len(starts):
        return starts
    cuts = np.searchsorted(np.cumsum(work, dtype=np.float64), np.linspace(0.0, total, parts + 1)[1:-1], side="right")
    return sorted(set(starts) | {int(c) for c in cuts if 0 < c < work.size})


def _groups(limits: tuple[tuple[np.ndarray, float], ...], cuts: set[int], total: int) -> list[int]:
    """The first network of each group: the longest runs within every limit (one network at least), ending at
    each of ``cuts`` too."""
    totals = [(np.cumsum(values, dtype=np.float64), limit) for values, limit in limits]
    ends = sorted(cuts | {total})
    starts, a = [], 0
    while a < total:  # one step per group
        starts.append(a)
        stop = min(int(np.searchsorted(c, (c[a - 1] if a else 0.0) + limit, side="right")) for c, limit in totals)
        stop = min(max(stop, a + 1), next(z for z in ends if z > a))
        a = stop
    return starts
