"""How many rows a shard of a job gets: within a worker's memory budget, about ``shard_seconds`` of work.

A job is admitted when one shard of it fits a worker's memory; otherwise it is refused with
RESOURCE_EXHAUSTED naming the limit (never a worker MemoryError or an OOM kill).
"""

from __future__ import annotations

from typing import Any

from .errors import ResourceExhausted

__all__ = ["shard_rows_for", "shard_memory_bytes", "WORK_PER_SECOND", "MIN_SHARD_ROWS"]

#: edge-rows (one edge for one example and one output) the engine does per second, roughly, on one core
WORK_PER_SECOND = 2.0e8
#: a shard smaller than this (when the batch is larger) costs more in bookkeeping than it saves
MIN_SHARD_ROWS = 64
#: engine temporaries beyond the buffers below: row slabs keep them bounded
_SLAB_BYTES = 256 << 20


def _per_row_and_fixed(meta: Any, loss: str | None, per_example: bool, itemsize: int) -> tuple[int, int]:
    """(bytes that grow with each row, bytes that do not) of one shard's engine call and result."""
    n_in, n, e, k = meta.n_inputs, meta.n_nodes, meta.n_edges, meta.n_outputs
    if loss is None:
        result_row, fixed = k * (1 + e + n), 0
    elif per_example:
        result_row, fixed = k + e + n, 0
    else:
        result_row, fixed = k, 3 * (e + n)       # the summed fields, a partial and the fold
    inputs_row = n_in + (k if loss else 0)
    return (result_row + inputs_row) * itemsize, fixed * itemsize + 8 * (2 * e + n)  # plus the network


def shard_memory_bytes(meta: Any, rows: int, loss: str | None, per_example: bool, dtype: str) -> int:
    """Estimated peak memory of one shard of ``rows`` rows on a worker (inputs, engine, result)."""
    itemsize = 4 if dtype == "float32" else 8
    per_row, fixed = _per_row_and_fixed(meta, loss, per_example, itemsize)
    engine = min(rows * (meta.n_inputs + 3 * meta.n_nodes) * (meta.n_outputs if loss is None else 1) * itemsize,
                 _SLAB_BYTES)
    return rows * per_row + fixed + engine


def shard_rows_for(meta: Any, batch: int, loss: str | None, per_example: bool, dtype: str,
                   requested: int, budget: int, seconds: float, max_shards: int) -> int:
    """Rows per shard: ``requested`` if it fits ``budget``, else the service's choice; ResourceExhausted if none fits."""
    if batch <= 0:
        return 0
    itemsize = 4 if dtype == "float32" else 8
    per_row, fixed = _per_row_and_fixed(meta, loss, per_example, itemsize)
    room = budget - fixed - _SLAB_BYTES
    if room < per_row:
        raise ResourceExhausted(
            f"request: one row of this job needs about {per_row + fixed + _SLAB_BYTES} bytes of worker memory,"
            f" over the limit of {budget} (EDGEGRAD_WORKER_MEMORY_BYTES); use a loss without per_example,"
            " or a smaller network")
    fit = max(1, room // per_row)
    if requested:
        if min(int(requested), batch) > fit:
            raise ResourceExhausted(
                f"shard_rows: {requested} rows need about {shard_memory_bytes(meta, min(requested, batch), loss, per_example, dtype)}"
                f" bytes of worker memory, over the limit of {budget} (EDGEGRAD_WORKER_MEMORY_BYTES);"
                f" use at most {fit}")
        return min(int(requested), batch)
    work_per_row = max(meta.n_edges + meta.n_nodes, 1) * (meta.n_outputs if loss is None else 1)
    by_time = max(MIN_SHARD_ROWS, int(seconds * WORK_PER_SECOND / work_per_row))
    rows = min(batch, fit, by_time)
    return max(rows, -(-batch // max(1, max_shards)))
