"""How many rows a shard of a job gets: within a worker's memory budget, about ``shard_seconds`` of work
and at most about SHARD_RESULT_BYTES of result (so results stream while later shards compute).

Memory comes from the engine's own estimate (``edgegrad.engine.memory``). A job is admitted when one row
of it fits a worker's budget; otherwise it is refused with RESOURCE_EXHAUSTED naming the limit
(never a worker MemoryError or an OOM kill).
"""

from __future__ import annotations

import functools

from ..engine.memory import result_bytes_per_row, rows_for_budget, slab_budget, thread_count, working_memory_bytes
from ..errors import ResourceExhausted
from ..model.sizes import NetworkSizes

__all__ = ["shard_rows_for", "WORK_PER_SECOND", "MIN_SHARD_ROWS", "SHARD_RESULT_BYTES", "PARTIAL_SUMS_BYTES"]

#: edge-rows (one edge for one example and one output) the engine does per second, roughly, on one core
WORK_PER_SECOND = 2.0e8
#: a shard smaller than this (when the batch is larger) costs more in bookkeeping than it saves
MIN_SHARD_ROWS = 64
#: result bytes a shard aims at: a shard's rows reach the client while the next shard computes
SHARD_RESULT_BYTES = 64 << 20
#: loss-mode partial sums (edge_grads + deltas of every shard) kept in Redis until they are folded
PARTIAL_SUMS_BYTES = 512 << 20
_LIMIT = "EDGEGRAD_WORKER_MEMORY_BYTES"


@functools.lru_cache(maxsize=256)
def _fit(budget: int, sizes: tuple[int, int, int, int], loss: str | None, per_example: bool, dtype: str,
         widest: int | None, slab: int, threads: int) -> int:
    """The most rows of a shard within ``budget``: a search over the estimate, made once per network, mode and
    engine settings (``slab`` and ``threads``, what the estimate reads, are in the key) rather than per job."""
    return rows_for_budget(budget, *sizes, loss, per_example, dtype, widest_level=widest, budget=slab)


def shard_rows_for(meta: NetworkSizes, batch: int, loss: str | None, per_example: bool, dtype: str,
                   requested: int, budget: int, seconds: float, max_shards: int) -> int:
    """Rows per shard: ``requested`` if it fits ``budget``, else the service's choice; ResourceExhausted if none fits."""
    if batch <= 0:
        return 0
    sizes = (meta.n_inputs, meta.n_nodes, meta.n_edges, meta.n_outputs)
    widest = getattr(meta, "widest_level", None)
    fit = _fit(budget, sizes, loss, per_example, dtype, widest, slab_budget(), thread_count())
    if fit < 1:
        need = working_memory_bytes(*sizes, 1, loss, per_example, dtype, widest_level=widest)
        raise ResourceExhausted(f"request: one row of this job needs about {need} bytes of worker memory, over the"
                                f" limit of {budget} ({_LIMIT}); use a loss without per_example, or a smaller network")
    shards_most = max_shards
    if loss is not None and not per_example:  # each shard's sums wait in Redis for the fold
        itemsize = 4 if dtype == "float32" else 8
        shards_most = min(max_shards, max(2, PARTIAL_SUMS_BYTES // ((meta.n_edges + meta.n_nodes) * itemsize)))
    if requested:
        rows = min(int(requested), batch)
        if rows > fit:
            need = working_memory_bytes(*sizes, rows, loss, per_example, dtype, widest_level=widest)
            raise ResourceExhausted(f"shard_rows: {rows} rows need about {need} bytes of worker memory, over the"
                                    f" limit of {budget} ({_LIMIT}); use at most {fit}")
        if -(-batch // rows) > shards_most:
            raise ResourceExhausted(f"shard_rows: {rows} rows make {-(-batch // rows)} shards, over the limit of"
                                    f" {shards_most} (EDGEGRAD_MAX_SHARDS, and the Redis room for loss-mode partial"
                                    f" sums); use at least {-(-batch // shards_most)}")
        return rows
    work_per_row = max(meta.n_edges + meta.n_nodes, 1) * (meta.n_outputs if loss is None else 1)
    by_time = max(MIN_SHARD_ROWS, int(seconds * WORK_PER_SECOND / work_per_row))
    by_result = max(MIN_SHARD_ROWS, SHARD_RESULT_BYTES // max(1, result_bytes_per_row(
        meta.n_nodes, meta.n_edges, meta.n_outputs, loss, per_example, dtype)))
    rows = max(min(batch, fit, by_time, by_result), -(-batch // max(1, shards_most)))
    rows = -(-batch // -(-batch // rows))  # as many shards as that takes, of even sizes
    if rows > fit:
        raise ResourceExhausted(f"request: {batch} rows need more than {shards_most} shards of at most {fit} rows"
                                f" ({_LIMIT}, EDGEGRAD_MAX_SHARDS)")
    return rows
