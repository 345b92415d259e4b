"""Conversions between numpy / Network / GradientResult and the edgegrad.v1 protos.

Tensors travel as raw little-endian bytes, so a float64 result decodes bit for bit equal to
what the engine produced. Networks travel in columns (ids once, then index arrays).
"""

from __future__ import annotations

import math
from typing import Any, Iterator, NamedTuple

import numpy as np

from .errors import InvalidInput
from .network import Network
from .result import GradientResult
from .v1 import job_pb2, network_pb2, tensor_pb2

__all__ = [
    "tensor_from_array", "array_from_tensor", "network_to_proto", "network_from_proto",
    "result_layout", "plan_chunks", "ChunkPlan", "result_chunks", "ResultAssembler",
    "FIELD_NAMES", "DTYPE_NAMES", "result_bytes",
]

_TO_NUMPY = {
    tensor_pb2.DTYPE_FLOAT64: np.dtype("<f8"),
    tensor_pb2.DTYPE_FLOAT32: np.dtype("<f4"),
    tensor_pb2.DTYPE_INT64: np.dtype("<i8"),
    tensor_pb2.DTYPE_INT32: np.dtype("<i4"),
    tensor_pb2.DTYPE_UINT8: np.dtype("u1"),
}
_FROM_NUMPY = {dt.newbyteorder("=") if dt.itemsize > 1 else dt: code for code, dt in _TO_NUMPY.items()}
#: proto dtype -> numpy name
DTYPE_NAMES = {code: dt.name for code, dt in _TO_NUMPY.items()}
#: ResultField -> GradientResult attribute
FIELD_NAMES = {
    job_pb2.RESULT_FIELD_OUTPUTS: "outputs",
    job_pb2.RESULT_FIELD_EDGE_GRADS: "edge_grads",
    job_pb2.RESULT_FIELD_DELTAS: "deltas",
}


# ------------------------------------------------------------------ tensors
def tensor_from_array(values: Any, dtype: Any = None) -> tensor_pb2.Tensor:
    """A Tensor holding ``values`` as little-endian bytes (float64 unless the array says otherwise)."""
    arr = np.asarray(values, dtype=dtype)
    if arr.dtype.kind == "f" and arr.dtype.itemsize not in (4, 8):
        arr = arr.astype(np.float64)
    if arr.dtype.kind in "iub" and dtype is None and arr.dtype not in (np.int64, np.int32, np.uint8):
        arr = arr.astype(np.int64)
    native = arr.dtype.newbyteorder("=") if arr.dtype.itemsize > 1 else arr.dtype
    code = _FROM_NUMPY.get(native)
    if code is None:
        raise InvalidInput(f"tensor: unsupported dtype {arr.dtype}")
    data = np.ascontiguousarray(arr, dtype=_TO_NUMPY[code]).tobytes()
    return tensor_pb2.Tensor(dtype=code, shape=arr.shape, data=data)


def array_from_tensor(tensor: tensor_pb2.Tensor, place: str, *, ndim: int | None = None) -> np.ndarray:
    """The numpy view of a Tensor (read-only, zero-copy); InvalidInput naming ``place`` if malformed."""
    dt = _TO_NUMPY.get(tensor.dtype)
    if dt is None:
        raise InvalidInput(f"{place}.dtype: unsupported dtype {tensor.dtype}")
    shape = tuple(int(s) for s in tensor.shape)
    if ndim is not None and len(shape) != ndim:
        raise InvalidInput(f"{place}.shape: expected {ndim} dimensions, got {list(shape)}")
    count = math.prod(shape)  # Python ints: a huge shape cannot wrap around
    if len(tensor.data) != count * dt.itemsize:
        raise InvalidInput(f"{place}.data: expected {count * dt.itemsize} bytes for shape {list(shape)}"
                           f" of {dt.name}, got {len(tensor.data)}")
    return np.frombuffer(tensor.data, dtype=dt).reshape(shape)


# ------------------------------------------------------------------ networks
def network_to_proto(net: Network) -> network_pb2.Network:
    """The columnar proto of a network (src/dst as int32 when they fit)."""
    table = sorted(set(net.activations))
    code = {name: i for i, name in enumerate(table)}
    index = np.fromiter((code[a] for a in net.activations), dtype=np.uint8, count=net.n_nodes)
    small = len(net.vertex_ids) < 2 ** 31
    idx_type = np.int32 if small else np.int64
    return network_pb2.Network(
        inputs=net.inputs, outputs=net.outputs, node_ids=net.node_ids, activation_table=table,
        activation_index=tensor_from_array(index), biases=tensor_from_array(net.biases, np.float64),
        src=tensor_from_array(net.src.astype(idx_type)), dst=tensor_from_array(net.dst.astype(idx_type)),
        weights=tensor_from_array(net.weights, np.float64))


def network_from_proto(msg: network_pb2.Network, place: str = "network") -> Network:
    """Decode and validate a columnar network; errors name the place as the JSON format would."""
    n = len(msg.node_ids)
    table = list(msg.activation_table)
    codes = array_from_tensor(msg.activation_index, f"{place}.activation_index", ndim=1) \
        if msg.HasField("activation_index") else np.zeros(0, dtype=np.uint8)
    if codes.size == 0 and n:
        activations: list[str] = ["identity"] * n
    else:
        if codes.size != n:
            raise InvalidInput(f"{place}.activation_index: expected {n} entries (one per node), got {codes.size}")
        codes = codes.astype(np.int64)
        bad = np.flatnonzero((codes < 0) | (codes >= len(table)))
        if bad.size:
            raise InvalidInput(f"nodes[{int(bad[0])}].activation: index {int(codes[bad[0]])} is not in"
                               f" activation_table (size {len(table)})")
        activations = np.array(table, dtype=object)[codes].tolist() if n else []
    biases = _column(msg, "biases", n, place, float_=True)
    src = _column(msg, "src", None, place)
    dst = _column(msg, "dst", None, place)
    weights = _column(msg, "weights", src.size, place, float_=True)
    return Network.from_arrays(list(msg.inputs), list(msg.outputs), list(msg.node_ids), activations,
                               biases, src, dst, weights)


def _column(msg: network_pb2.Network, name: str, size: int | None, place: str, float_: bool = False) -> np.ndarray:
    if not msg.HasField(name):
        return np.zeros(size or 0, dtype=np.float64 if float_ else np.int64)
    arr = array_from_tensor(getattr(msg, name), f"{place}.{name}", ndim=1)
    if float_ and arr.dtype.kind != "f":
        raise InvalidInput(f"{place}.{name}.dtype: expected float64, got {arr.dtype.name}")
    if not float_ and arr.dtype.kind not in "iu":
        raise InvalidInput(f"{place}.{name}.dtype: expected int32 or int64, got {arr.dtype.name}")
    return arr


# ------------------------------------------------------------------ results
def result_layout(net: Any, batch: int, loss: str | None, per_example: bool, dtype: str,
                  chunk_bytes: int) -> job_pb2.ResultLayout:
    """Shapes of every result field and the number of chunks they stream as."""
    k, e, n = len(net.outputs), int(net.n_edges), int(net.n_nodes)
    if loss is None:
        shapes = [(batch, k), (batch, k, e), (batch, k, n)]
    elif per_example:
        shapes = [(batch, k), (batch, e), (batch, n)]
    else:
        shapes = [(batch, k), (e,), (n,)]
    code = tensor_pb2.DTYPE_FLOAT32 if dtype == "float32" else tensor_pb2.DTYPE_FLOAT64
    layout = job_pb2.ResultLayout(dtype=code, loss_mode=loss is not None, batch=batch, chunk_bytes=chunk_bytes)
    for field, shape in zip(FIELD_NAMES, shapes):
        row = math.prod(shape[1:])
        layout.fields.add(field=field, shape=shape, row_elements=row)
    budget = _chunk_budget(layout, chunk_bytes)
    layout.chunk_count = sum(-(-math.prod(f.shape) // _chunk_step(f, budget)) for f in layout.fields)
    return layout


def result_bytes(layout: job_pb2.ResultLayout) -> int:
    """Total size of a result's arrays in bytes."""
    itemsize = _TO_NUMPY[layout.dtype].itemsize
    return sum(math.prod(f.shape) for f in layout.fields) * itemsize  # Python ints: no wrap-around


class ChunkPlan(NamedTuple):
    """One chunk: flat elements [start, stop) of a field, touching rows [row_start, row_stop)."""

    seq: int
    field: int
    start: int
    stop: int
    row_start: int
    row_stop: int
    whole_rows: bool


def _chunk_budget(layout: job_pb2.ResultLayout, chunk_bytes: int) -> int:
    """Elements one chunk may carry, leaving room for the message's own fields."""
    return max(1, (int(chunk_bytes) - 256) // _TO_NUMPY[layout.dtype].itemsize)


def _chunk_step(field: job_pb2.FieldLayout, budget: int) -> int:
    """Elements per chunk of a field: whole rows when a row fits in the budget."""
    row = max(1, int(field.row_elements))
    return (budget // row) * row if row <= budget else budget


def plan_chunks(layout: job_pb2.ResultLayout, chunk_bytes: int) -> list[ChunkPlan]:
    """The deterministic chunking of a result: field by field, whole rows when a row fits."""
    budget = _chunk_budget(layout, chunk_bytes)
    plans: list[ChunkPlan] = []
    for f in layout.fields:
        total = math.prod(f.shape)
        row = max(1, int(f.row_elements))
        step = _chunk_step(f, budget)
        for start in range(0, total, step):
            stop = min(total, start + step)
            whole = start % row == 0 and (stop % row == 0 or stop == total)
            plans.append(ChunkPlan(len(plans) + 1, int(f.field), start, stop, start // row, -(-stop // row), whole))
    return plans


def result_chunks(result: GradientResult, layout: job_pb2.ResultLayout, chunk_bytes: int,
                  after_seq: int = 0) -> Iterator[job_pb2.ResultChunk]:
    """The chunks of ``result`` in seq order (those with seq > ``after_seq``)."""
    dt = _TO_NUMPY[layout.dtype]
    flats: dict[int, np.ndarray] = {}
    for f in layout.fields:
        arr = np.ascontiguousarray(getattr(result, FIELD_NAMES[f.field]), dtype=dt)
        if arr.shape != tuple(f.shape):
            raise ValueError(f"{FIELD_NAMES[f.field]}: shape {arr.shape}, layout says {tuple(f.shape)}")
        flats[f.field] = arr.reshape(-1)
    rows = {f.field: tuple(int(s) for s in f.shape[1:]) for f in layout.fields}
    for p in plan_chunks(layout, chunk_bytes):
        if p.seq <= after_seq:
            continue
        piece = flats[p.field][p.start:p.stop]
        shape = (p.row_stop - p.row_start, *rows[p.field]) if p.whole_rows else (p.stop - p.start,)
        yield job_pb2.ResultChunk(
            seq=p.seq, field=p.field, start=p.start, stop=p.stop, row_start=p.row_start, row_stop=p.row_stop,
            data=tensor_pb2.Tensor(dtype=layout.dtype, shape=shape, data=piece.tobytes()))


class ResultAssembler:
    """Collects chunks (in any order, each once) into a GradientResult."""

    def __init__(self, layout: job_pb2.ResultLayout) -> None:
        self.layout = layout
        dt = _TO_NUMPY[layout.dtype]
        self._arrays = {f.field: np.empty(tuple(f.shape), dtype=dt) for f in layout.fields}
        self._seen: set[int] = set()

    @property
    def last_seq(self) -> int:
        """Highest seq received so far (what to resume after)."""
        return max(self._seen, default=0)

    @property
    def complete(self) -> bool:
        """Whether every chunk has arrived."""
        return len(self._seen) == self.layout.chunk_count

    def add(self, chunk: job_pb2.ResultChunk) -> None:
        """Copy one chunk into place; a repeated seq is ignored."""
        if chunk.seq in self._seen:
            return
        flat = self._arrays[chunk.field].reshape(-1)
        data = array_from_tensor(chunk.data, "chunk.data").reshape(-1)
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
                              a[job_pb2.RESULT_FIELD_EDGE_GRADS], a[job_pb2.RESULT_FIELD_DELTAS])

