"""What a population shard reads of its job's upload: only its own networks' values and rows.

An uploaded part (``PopulationRequest.uploaded``) is float64 values in pieces of ``piece_values``; a shard
reads the pieces that hold its range (its networks' weights and biases, its networks' packed rows, or
its row shard's shared rows) with one MGET, never the whole part.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np

from edgegrad.errors import NotFound
from edgegrad.jobs.worker_store import WorkerStore
from edgegrad.v1 import job_pb2
from edgegrad.wire.population_rows import read_rows, row_counts
from edgegrad.wire.population_uploads import flat_offsets

__all__ = ["piece_values", "shard_rows"]


def piece_values(store: WorkerStore, upload: str, part: job_pb2.UploadedField, start: int, stop: int) -> np.ndarray:
    """Values [start, stop) of an uploaded part (float64)."""
    if stop <= start:
        return np.zeros(0, dtype=np.float64)
    size = max(1, int(part.piece_values))
    first, last = start // size, (stop - 1) // size
    keys = [store.keys.piece(upload, part.field, i) for i in range(first, last + 1)]
    blobs = cast(list[bytes | None], store.redis.mget(keys))
    if any(blob is None for blob in blobs):
        raise NotFound(f"population.upload: the {part.field} of upload {upload!r} expired before the job ran",
                       field="population.upload")
    flat = np.frombuffer(b"".join(cast(list[bytes], blobs)), dtype="<f8")
    return flat[start - first * size:stop - first * size]


def shard_rows(store: WorkerStore, request: job_pb2.PopulationRequest, name: str, widths: np.ndarray, a: int,
               b: int, window: tuple[int, int] | None) -> Any:
    """Networks [a, b)'s ``name`` (inputs or targets): shared rows (rows ``window`` of them, when given) or each
    network's own (each cut to ``window``); from the upload where the request put them there, else from the
    request; None when there are none."""
    parts = {part.field: part for part in request.uploaded}
    if name in parts:   # shared rows: read only the window's
        part = parts[name]
        width = max(1, int(part.columns))
        r0, r1 = window if window is not None else (0, int(part.values) // width)
        return piece_values(store, request.upload, part, r0 * width, r1 * width).reshape(-1, width)
    if f"{name}_packed" in parts:
        counts = row_counts(request, len(widths))
        starts = flat_offsets(counts, widths)
        flat = piece_values(store, request.upload, parts[f"{name}_packed"], int(starts[a]), int(starts[b]))
        bounds = (starts[a:b + 1] - starts[a]).tolist()
        rows = [flat[bounds[i]:bounds[i + 1]].reshape(int(counts[a + i]), int(widths[a + i])) for i in range(b - a)]
    else:
        rows = read_rows(request, name, widths, a, b)
    if rows is None or window is None:
        return rows
    r0, r1 = window
    return rows[r0:r1] if not isinstance(rows, list) else [each[r0:r1] for each in rows]
