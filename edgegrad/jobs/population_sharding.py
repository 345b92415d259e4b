"""How a population job is cut into shards: consecutive networks, each shard within a worker's memory budget,
about ``shard_seconds`` of work and about SHARD_RESULT_BYTES of result (so results stream while later shards run).

Memory is estimated per network (result arrays, packing of its edges and nodes, its rows) plus the
kernel's per-thread chunk buffers once; a network that alone would not fit is refused with
RESOURCE_EXHAUSTED naming ``nets[i]``.
"""

from __future__ import annotations

import numpy as np

from ..engine.memory import thread_count
from ..engine.population_results import CHUNK_BYTES, OUTPUTS
from ..errors import ResourceExhausted
from .sharding import SHARD_RESULT_BYTES, WORK_PER_SECOND

__all__ = ["population_shards", "PACK_BYTES_PER_ITEM"]

#: bytes the packing of one edge or node takes on a worker (plans, CSR, file-order maps), an upper bound
PACK_BYTES_PER_ITEM = 96
_LIMIT = "EDGEGRAD_WORKER_MEMORY_BYTES"


def population_shards(sizes: np.ndarray, inputs: np.ndarray, mode: int, result_bytes: np.ndarray, requested: int,
                      budget: int, seconds: float, max_shards: int) -> list[int]:
    """The first network of each shard. ``sizes``: int64 P×4 (B, K, E, N); ``inputs``: I of each network;
    ``result_bytes``: each network's result bytes; ``requested``: networks per shard (0: the service picks)."""
    b, k, e, n = (sizes[:, i].astype(np.int64) for i in range(4))
    memory = result_bytes + (e + n + inputs) * PACK_BYTES_PER_ITEM + b * (inputs + k) * 8
    room = budget - thread_count() * CHUNK_BYTES
    over = np.flatnonzero(memory > room)
    if over.size:
        p = int(over[0])
        raise ResourceExhausted(f"nets[{p}]: needs about {int(memory[p])} bytes of worker memory with its rows, over"
                                f" the limit of {budget} ({_LIMIT}); use fewer rows or per_example=False")
    total = memory.size
    if requested:
        starts = list(range(0, total, int(requested)))
        if len(starts) > max_shards:
            raise ResourceExhausted(f"shard_networks: {requested} networks make {len(starts)} shards, over the limit of"
                                    f" {max_shards} (EDGEGRAD_MAX_SHARDS); use at least {-(-total // max_shards)}")
        for a in starts:
            used = int(memory[a:a + int(requested)].sum())
            if used > room:
                raise ResourceExhausted(f"shard_networks: networks {a}..{min(total, a + int(requested)) - 1} need about"
                                        f" {used} bytes of worker memory, over the limit of {budget} ({_LIMIT})")
        return starts
    work = b * np.maximum(e + n, 1) * np.where(mode == OUTPUTS, k, 1)
    limits = ((work, max(1.0, seconds * WORK_PER_SECOND)), (memory, float(room)),
              (result_bytes, float(SHARD_RESULT_BYTES)))
    totals = [(np.cumsum(values, dtype=np.float64), limit) for values, limit in limits]
    starts, a = [], 0
    while a < total:  # one step per shard: the longest run of networks within every limit (one at least)
        starts.append(a)
        stop = min(int(np.searchsorted(c, (c[a - 1] if a else 0.0) + limit, side="right")) for c, limit in totals)
        a = max(stop, a + 1)
    if len(starts) > max_shards:  # fewer, larger shards: as many networks each as the limit needs
        per = -(-total // max_shards)
        if any(int(memory[s:s + per].sum()) > room for s in range(0, total, per)):
            raise ResourceExhausted(f"nets: {total} networks need more than {max_shards} shards within {budget} bytes"
                                    f" each ({_LIMIT}, EDGEGRAD_MAX_SHARDS)")
        starts = list(range(0, total, per))
    return starts
