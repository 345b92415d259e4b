"""The fold of a population job's row shards: each group's partial sums added in shard order, then written.

Every row shard leaves its partial result in Redis when it reports (``partial_bytes``: each of its networks'
loss as float64, then in loss mode without per_example their edge and bias sums in the job's dtype, network
after network). The worker whose shard completes a group folds it (``fold_group``): the parts are added in
shard order with ``fold_partials`` (the sums of a one-network job's shards are folded the same way), so the
result is the same bits whichever worker ran which shard and on every rerun. The worker that ends the job
first folds any group whose fold is not all written (``fold_missing``): its worker died, or is still at it,
and writing the same chunks again is harmless (EMIT places each chunk number once).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from edgegrad.engine.api import fold_partials
from edgegrad.engine.population_results import SUMS, FlatResults
from edgegrad.engine.result import GradientResult
from edgegrad.errors import InvalidInput
from edgegrad.jobs.record import progress
from edgegrad.jobs.worker_store import EMIT_WRITTEN, WorkerStore
from edgegrad.v1 import job_pb2
from edgegrad.wire.chunking import buffered_chunk_limit, chunk_parts, numpy_dtype
from edgegrad.wire.population import population_chunk_plans, population_mode, population_offsets
from edgegrad.wire.population_shards import row_shards

__all__ = ["partial_bytes", "fold_group", "fold_missing"]

_EDGES, _DELTAS, _LOSS = job_pb2.RESULT_FIELD_EDGE_GRADS, job_pb2.RESULT_FIELD_DELTAS, job_pb2.RESULT_FIELD_LOSS


def partial_bytes(flat: FlatResults, layout: job_pb2.ResultLayout) -> bytes:
    """A row shard's partial result: its networks' losses, then (loss-mode sums) their edge and bias sums."""
    if not layout.loss_mode:
        return b""
    loss = np.ascontiguousarray(flat.loss, dtype=np.float64).tobytes()
    if population_mode(layout) != SUMS:
        return loss
    dtype = numpy_dtype(layout)
    return loss + flat.edge_grads.astype(dtype, copy=False).tobytes() + flat.deltas.astype(dtype, copy=False).tobytes()


def _fold_field(group: int) -> str:
    return f"f:{group}"


def fold_group(store: WorkerStore, job_id: str, layout: job_pb2.ResultLayout, group: int, after: int = 0) -> bool:
    """Add group ``group``'s partial results in shard order and write its folded chunks (those past ``after``);
    False when the job was cancelled or deleted meanwhile."""
    shards = row_shards(layout)
    first, stop = shards.group_shards[group], shards.group_shards[group + 1]
    a, b = shards.net_start[first], shards.net_stop[first]
    offsets = population_offsets(layout)
    sums = population_mode(layout) == SUMS
    e = int(offsets[_EDGES][b] - offsets[_EDGES][a]) if sums else 0
    n = int(offsets[_DELTAS][b] - offsets[_DELTAS][a]) if sums else 0
    dtype = numpy_dtype(layout)
    empty = np.empty((0, 1), dtype=dtype)
    losses: list[np.ndarray] = []

    def parts() -> Iterator[GradientResult]:
        for i, blob in zip(range(first, stop), store.partials(job_id, first, stop)):
            if blob is None or len(blob) != 8 * (b - a) + (e + n) * dtype.itemsize:
                raise InvalidInput(f"shard {i}: partial sums missing")
            loss = np.frombuffer(blob, dtype=np.float64, count=b - a)
            losses.append(loss if not losses else losses[-1] + loss)   # in shard order, as the sums
            values = np.frombuffer(blob, dtype=dtype, offset=8 * (b - a))
            yield GradientResult(empty, None, values[:e], values[e:])

    total = fold_partials(parts())
    arrays: dict[int, np.ndarray] = {_LOSS: losses[-1], _EDGES: total.edge_grads, _DELTAS: total.deltas}
    _check_finite(arrays, offsets, a, b, sums, dtype.name)
    index = layout.shard_count + group
    plans = population_chunk_plans(layout, index, offsets)
    chunks = chunk_parts(arrays, layout, plans, shard=index, after=after,
                         offsets={f: int(offsets[f][a]) for f in arrays if f in offsets})
    code, _ = store.emit(job_id, _fold_field(group), chunks, buffered_chunk_limit(layout))
    return code == EMIT_WRITTEN


def fold_missing(store: WorkerStore, job_id: str, layout: job_pb2.ResultLayout) -> bool:
    """Fold every group whose folded chunks are not all written yet; False when the job stopped meanwhile."""
    groups = len(row_shards(layout).group_shards) - 1
    offsets = population_offsets(layout)
    fields = [_fold_field(g) for g in range(groups)]
    found = dict(zip((f.encode() for f in fields), store.progress(job_id, fields)))
    for g in range(groups):
        written = _written(found, g)
        if written < len(population_chunk_plans(layout, layout.shard_count + g, offsets)):
            if not fold_group(store, job_id, layout, g, written):
                return False
    return True


def _written(found: dict[bytes, bytes | None], group: int) -> int:
    return progress(found.get(_fold_field(group).encode()))[2]


def _check_finite(arrays: dict[int, np.ndarray], offsets: dict[int, np.ndarray], a: int, b: int, sums: bool,
                  dtype: str) -> None:
    """InvalidInput naming the first network whose folded loss or sums overflow (every part was finite)."""
    for field, what in ((_LOSS, "its loss summed over the row shards"), (_DELTAS, "δ summed over the batch"),
                        (_EDGES, "a derivative summed over the batch")):
        if field != _LOSS and not sums:
            continue
        bad = np.flatnonzero(~np.isfinite(arrays[field]))
        if bad.size:
            start = offsets[field][a:b + 1] - offsets[field][a]
            p = a + int(np.searchsorted(start, bad[0], side="right")) - 1
            place = "" if field == _LOSS else f"{'nodes' if field == _DELTAS else 'edges'}[{int(bad[0] - start[p - a])}]: "
            raise InvalidInput(f"nets[{p}]: {place}{what} overflows {dtype}")
