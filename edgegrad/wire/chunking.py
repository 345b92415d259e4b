"""How a result travels: its layout, its shards' row ranges, and the chunks each shard writes.

A result field is either *per row* (axis 0 is the batch: outputs, and every field outside plain
loss mode) or *summed* (loss mode's edge_grads and deltas). A shard writes the chunks of its rows
of the per-row fields; the summed fields are written once, after the shards' partial sums are
folded in shard order. Chunk sizes follow one rule (whole rows when a row fits in a chunk), so
chunk counts are known at submit time by arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import NamedTuple, cast

import numpy as np

from ..engine.result import GradientResult
from ..model.sizes import NetworkSizes
from ..v1 import job_pb2, tensor_pb2
from .framing import chunk_pieces
from .rawchunk import RawChunk, chunk_values

__all__ = ["result_layout", "result_bytes", "ChunkPlan", "shard_bounds", "shard_chunk_plans",
           "summed_chunk_plans", "plan_chunks", "result_chunks", "ResultAssembler",
           "FIELD_NAMES", "is_summed", "field_arrays", "buffered_chunk_limit", "chunk_payloads", "chunk_parts",
           "numpy_dtype", "field_dtype", "FLOAT64_FIELDS"]

_ITEMSIZE: dict[int, int] = {tensor_pb2.DTYPE_FLOAT64: 8, tensor_pb2.DTYPE_FLOAT32: 4}
_NUMPY: dict[int, np.dtype] = {tensor_pb2.DTYPE_FLOAT64: np.dtype("<f8"), tensor_pb2.DTYPE_FLOAT32: np.dtype("<f4")}

#: ResultField -> GradientResult attribute
FIELD_NAMES = {
    job_pb2.RESULT_FIELD_OUTPUTS: "outputs",
    job_pb2.RESULT_FIELD_EDGE_GRADS: "edge_grads",
    job_pb2.RESULT_FIELD_DELTAS: "deltas",
    job_pb2.RESULT_FIELD_NORMS: "norms",
}
#: fields whose chunks are float64 whatever the layout's dtype (a population's per-network losses)
FLOAT64_FIELDS = frozenset({job_pb2.RESULT_FIELD_LOSS})


class ChunkPlan(NamedTuple):
    """One chunk: flat elements [start, stop) of a field, touching rows [row_start, row_stop)."""

    seq: int          #: 1-based place in its shard's (or the summed fields') chunks
    field: int
    start: int
    stop: int
    row_start: int
    row_stop: int
    whole_rows: bool


def numpy_dtype(layout: job_pb2.ResultLayout) -> np.dtype:
    """The numpy dtype of a result's chunks."""
    return _NUMPY[layout.dtype]


def field_dtype(layout: job_pb2.ResultLayout, field: int) -> tensor_pb2.DType:
    """The DType of one field's chunks (the layout's, float64 for FLOAT64_FIELDS)."""
    return tensor_pb2.DTYPE_FLOAT64 if field in FLOAT64_FIELDS else layout.dtype


def is_summed(layout: job_pb2.ResultLayout, field: job_pb2.FieldLayout) -> bool:
    """Whether a field is a sum over the batch (loss mode's edge_grads and deltas) rather than rows."""
    return layout.loss_mode and not layout.HasField("population") and len(field.shape) == 1 and field.field != job_pb2.RESULT_FIELD_NORMS


def result_layout(net: NetworkSizes, batch: int, loss: str | None, per_example: bool, dtype: str,
                  chunk_bytes: int, shard_rows: int = 0, buffer_bytes: int = 0,
                  norms: bool = False) -> job_pb2.ResultLayout:
    """Shapes of every result field, the shards and the number of chunks they stream as (``norms``: loss
    mode's per-example norms too, one number per row)."""
    k, e, n = len(net.outputs), int(net.n_edges), int(net.n_nodes)
    if loss is None:
        shapes = [(batch, k), (batch, k, e), (batch, k, n)]
    elif per_example:
        shapes = [(batch, k), (batch, e), (batch, n)]
    else:
        shapes = [(batch, k), (e,), (n,)]
    code = tensor_pb2.DTYPE_FLOAT32 if dtype == "float32" else tensor_pb2.DTYPE_FLOAT64
    shard_rows = min(int(shard_rows) or batch, batch) if batch else 0
    layout = job_pb2.ResultLayout(dtype=code, loss_mode=loss is not None, batch=batch, chunk_bytes=chunk_bytes,
                                  shard_rows=shard_rows, shard_count=-(-batch // shard_rows) if batch else 0,
                                  buffer_bytes=buffer_bytes)
    if norms and loss is not None:
        shapes.append((batch,))
    for field, shape in zip(FIELD_NAMES, shapes):
        layout.fields.add(field=field, shape=shape, row_elements=math.prod(shape[1:]))
    full, last = layout.shard_rows, batch - (layout.shard_count - 1) * layout.shard_rows
    per_shard_full = sum(_row_chunk_count(f, full, _budget(layout)) for f in _per_row(layout))
    per_shard_last = sum(_row_chunk_count(f, last, _budget(layout)) for f in _per_row(layout))
    summed = sum(-(-math.prod(f.shape) // _budget(layout)) for f in _summed(layout))
    layout.chunk_count = per_shard_full * (layout.shard_count - 1) + per_shard_last + summed
    return layout


def buffered_chunk_limit(layout: job_pb2.ResultLayout) -> int:
    """Most chunks of a job the service holds unacknowledged (0: no limit); every chunk is at most chunk_bytes."""
    if not layout.buffer_bytes:
        return 0
    return max(2, int(layout.buffer_bytes) // max(1, int(layout.chunk_bytes)))


def result_bytes(layout: job_pb2.ResultLayout) -> int:
    """Total size of a result's arrays in bytes."""
    return sum(math.prod(f.shape) * _ITEMSIZE[field_dtype(layout, f.field)] for f in layout.fields)  # Python ints


def _budget(layout: job_pb2.ResultLayout) -> int:
    """Elements one chunk may carry, leaving room for the message's own fields."""
    return max(1, (int(layout.chunk_bytes) - 256) // _ITEMSIZE[layout.dtype])


def _per_row(layout: job_pb2.ResultLayout) -> list[job_pb2.FieldLayout]:
    return [f for f in layout.fields if not is_summed(layout, f)]


def _summed(layout: job_pb2.ResultLayout) -> list[job_pb2.FieldLayout]:
    return [f for f in layout.fields if is_summed(layout, f)]


def _row_chunk_count(field: job_pb2.FieldLayout, rows: int, budget: int) -> int:
    """Chunks of ``rows`` rows of a per-row field."""
    row = max(1, int(field.row_elements))
    if rows <= 0 or int(field.row_elements) == 0:
        return 0
    return -(-rows // (budget // row)) if row <= budget else -(-(rows * row) // budget)


def _plans(field: job_pb2.FieldLayout, first: int, last: int, budget: int, plans: list[ChunkPlan]) -> None:
    """Append the chunks of flat elements [first, last) of a field."""
    row = max(1, int(field.row_elements))
    step = (budget // row) * row if row <= budget else budget
    for start in range(first, last, step):
        stop = min(last, start + step)
        whole = start % row == 0 and stop % row == 0
        plans.append(ChunkPlan(len(plans) + 1, int(field.field), start, stop, start // row, -(-stop // row), whole))


def shard_bounds(layout: job_pb2.ResultLayout, index: int) -> tuple[int, int]:
    """Rows [start, stop) of shard ``index``."""
    start = index * int(layout.shard_rows)
    return start, min(int(layout.batch), start + int(layout.shard_rows))


def shard_chunk_plans(layout: job_pb2.ResultLayout, index: int) -> list[ChunkPlan]:
    """The chunks shard ``index`` writes: its rows of every per-row field, field by field."""
    a, b = shard_bounds(layout, index)
    plans: list[ChunkPlan] = []
    for f in _per_row(layout):
        _plans(f, a * int(f.row_elements), b * int(f.row_elements), _budget(layout), plans)
    return plans


def summed_chunk_plans(layout: job_pb2.ResultLayout) -> list[ChunkPlan]:
    """The chunks of the summed fields (loss mode), written once every shard is folded in."""
    plans: list[ChunkPlan] = []
    for f in _summed(layout):
        _plans(f, 0, math.prod(f.shape), _budget(layout), plans)
    return plans


def plan_chunks(layout: job_pb2.ResultLayout) -> list[ChunkPlan]:
    """Every chunk of a result in one order (shards in turn, then the summed fields), seq 1..count."""
    plans = [p for i in range(layout.shard_count) for p in shard_chunk_plans(layout, i)]
    plans += summed_chunk_plans(layout)
    return [p._replace(seq=i + 1) for i, p in enumerate(plans)]


def field_arrays(result: GradientResult, layout: job_pb2.ResultLayout) -> dict[int, np.ndarray]:
    """A result's fields as flat arrays of the layout's dtype, by ResultField."""
    dt = numpy_dtype(layout)
    return {f.field: np.ascontiguousarray(getattr(result, FIELD_NAMES[f.field]), dtype=dt).reshape(-1)
            for f in layout.fields}


def chunk_payloads(arrays: Mapping[int, np.ndarray], layout: job_pb2.ResultLayout, plans: list[ChunkPlan],
                   first_row: int = 0, shard: int = 0, after: int = 0) -> Iterator[tuple[int, bytes]]:
    """(plan seq, serialized ResultChunk without seq) of flat ``arrays`` holding rows from ``first_row``.

    ``arrays`` has a shard's rows of the per-row fields (or the whole summed fields); plans with
    ``seq <= after`` are skipped (written by an earlier attempt). The data is framed by hand so
    each chunk's numbers are copied once, not three times as building and serializing a message does.
    """
    for seq, parts in chunk_parts(arrays, layout, plans, first_row, shard, after):
        yield seq, b"".join(parts)


def chunk_parts(arrays: Mapping[int, np.ndarray], layout: job_pb2.ResultLayout, plans: list[ChunkPlan],
                first_row: int = 0, shard: int = 0, after: int = 0,
                offsets: Mapping[int, int] | None = None) -> Iterator[tuple[int, list]]:
    """``chunk_payloads`` with each payload left as its pieces: small headers, then a view of the
    data in ``arrays`` (no copy), for a writer that sends them one after another. ``offsets``: the
    flat element of each field that ``arrays`` starts at (instead of ``first_row``'s)."""
    rows = {f.field: tuple(int(s) for s in f.shape[1:]) for f in layout.fields}
    offset = dict(offsets) if offsets is not None else {
        f.field: 0 if is_summed(layout, f) else first_row * int(f.row_elements) for f in layout.fields}
    for p in plans:
        if p.seq <= after:
            continue
        piece = arrays[p.field][p.start - offset[p.field]:p.stop - offset[p.field]]
        shape = (p.row_stop - p.row_start, *rows[p.field]) if p.whole_rows else (p.stop - p.start,)
        header = job_pb2.ResultChunk(field=cast(job_pb2.ResultField, p.field), start=p.start, stop=p.stop, row_start=p.row_start,
                                     row_stop=p.row_stop, shard=shard).SerializeToString()
        tensor = tensor_pb2.Tensor(dtype=field_dtype(layout, p.field), shape=shape).SerializeToString()
        yield p.seq, chunk_pieces(header, tensor, np.ascontiguousarray(piece).data.cast("B"))


def result_chunks(result: GradientResult, layout: job_pb2.ResultLayout, *, after_seq: int = 0
                  ) -> Iterator[job_pb2.ResultChunk]:
    """The chunks of a whole ``result`` in :func:`plan_chunks` order, seq set (those after ``after_seq``)."""
    arrays = field_arrays(result, layout)
    for f in layout.fields:
        if arrays[f.field].size != math.prod(f.shape):
            raise ValueError(f"{FIELD_NAMES[f.field]}: {arrays[f.field].size} elements, layout says {tuple(f.shape)}")
    for seq, payload in chunk_payloads(arrays, layout, plan_chunks(layout), after=after_seq):
        chunk = job_pb2.ResultChunk.FromString(payload)
        chunk.seq = seq
        yield chunk


class ResultAssembler:
    """Collects chunks (in any order, each once) into a GradientResult."""

    def __init__(self, layout: job_pb2.ResultLayout) -> None:
        self.layout = layout
        self._arrays = {f.field: np.empty(tuple(f.shape), dtype=_NUMPY[field_dtype(layout, f.field)])
                        for f in layout.fields}
        self._seen: set[int] = set()

    @property
    def last_seq(self) -> int:
        """Highest seq received so far (what to resume after)."""
        return max(self._seen, default=0)

    @property
    def complete(self) -> bool:
        """Whether every chunk has arrived."""
        return len(self._seen) == self.layout.chunk_count

    def add(self, chunk: job_pb2.ResultChunk | RawChunk) -> None:
        """Copy one chunk (a message, or one read by ``rawchunk.decode_event``) into place; a repeated seq is ignored."""
        if chunk.seq in self._seen:
            return
        flat = self._arrays[chunk.field].reshape(-1)
        data = chunk_values(chunk)
        if data.size != chunk.stop - chunk.start or chunk.stop > flat.size:
            raise ValueError(f"chunk {chunk.seq}: bad range {chunk.start}..{chunk.stop}")
        flat[chunk.start:chunk.stop] = data
        self._seen.add(chunk.seq)

    def result(self, loss: float | None) -> GradientResult:
        """The assembled result; raises if chunks are missing."""
        if not self.complete:
            missing = sorted(set(range(1, self.layout.chunk_count + 1)) - self._seen)
            raise ValueError(f"result incomplete: missing chunks {missing[:5]}")
        a = self._arrays
        return GradientResult(a[job_pb2.RESULT_FIELD_OUTPUTS], loss if self.layout.loss_mode else None,
                              a[job_pb2.RESULT_FIELD_EDGE_GRADS], a[job_pb2.RESULT_FIELD_DELTAS],
                              a.get(job_pb2.RESULT_FIELD_NORMS))
