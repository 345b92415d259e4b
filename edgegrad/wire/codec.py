"""Conversions between numpy / Network and the edgegrad.v1 protos (results: ``chunking``).

Tensors travel as raw little-endian bytes, so a float64 result decodes bit for bit equal to
what the engine produced. Networks travel in columns (ids once, then index arrays).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import InvalidInput
from ..model.network import Network
from ..v1 import network_pb2, tensor_pb2

__all__ = ["tensor_from_array", "array_from_tensor", "network_to_proto", "network_from_proto"]

_TO_NUMPY: dict[tensor_pb2.DType, np.dtype] = {
    tensor_pb2.DTYPE_FLOAT64: np.dtype("<f8"),
    tensor_pb2.DTYPE_FLOAT32: np.dtype("<f4"),
    tensor_pb2.DTYPE_INT64: np.dtype("<i8"),
    tensor_pb2.DTYPE_INT32: np.dtype("<i4"),
    tensor_pb2.DTYPE_UINT8: np.dtype("u1"),
}
_FROM_NUMPY: dict[np.dtype, tensor_pb2.DType] = {dt.newbyteorder("=") if dt.itemsize > 1 else dt: code for code, dt in _TO_NUMPY.items()}


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


def array_from_tensor(tensor: tensor_pb2.Tensor, place: str, *, ndim: int | None = None,
                      data: Any = None) -> np.ndarray:
    """The numpy view of a Tensor (read-only, zero-copy); InvalidInput naming ``place`` if malformed.

    ``data``: the tensor's bytes when they are held apart from it (a view of a received message)."""
    dt = _TO_NUMPY.get(tensor.dtype)
    if dt is None:
        raise InvalidInput(f"{place}.dtype: unsupported dtype {tensor.dtype}")
    shape = tuple(int(s) for s in tensor.shape)
    if ndim is not None and len(shape) != ndim:
        raise InvalidInput(f"{place}.shape: expected {ndim} dimensions, got {list(shape)}")
    count = math.prod(shape)  # Python ints: a huge shape cannot wrap around
    if data is None:
        data = tensor.data  # each access of a bytes field makes a new copy: once only
    if len(data) != count * dt.itemsize:
        raise InvalidInput(f"{place}.data: expected {count * dt.itemsize} bytes for shape {list(shape)}"
                           f" of {dt.name}, got {len(data)}")
    return np.frombuffer(data, dtype=dt).reshape(shape)


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
