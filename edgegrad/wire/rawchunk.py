"""A watch stream's JobEvents as the client reads them: chunk events decoded by hand into a RawChunk, zero-copy.

Parsing a JobEvent that carries a result chunk copies its data twice (into the message, then into
a new ``bytes`` on each access of ``Tensor.data``); a client that assembles a large result pays that
on every byte. ``decode_event`` reads the few numbers of a chunk event itself and keeps its data as
a view of the received bytes, so the assembler copies each byte once, into place. Anything it does
not recognise exactly (another event, a field repeated, a wire type it does not expect) is parsed
by protobuf as before, so what a client sees never depends on which road was taken. The field
numbers come from the descriptors (``framing.py``).
"""

from __future__ import annotations

from typing import NamedTuple, cast

import numpy as np

from ..v1 import job_pb2, tensor_pb2
from .codec import array_from_tensor
from .framing import (
    CHUNK_DATA,
    CHUNK_VARINTS,
    EVENT_CHUNK,
    LENGTH_DELIMITED,
    TENSOR_DATA,
    TENSOR_DTYPE,
    TENSOR_SHAPE,
    VARINT,
    field_key,
)

__all__ = ["RawChunk", "decode_event", "as_message", "chunk_values"]

_CHUNK_EVENT = field_key(EVENT_CHUNK, LENGTH_DELIMITED)
_TENSOR_FIELDS = (TENSOR_DTYPE, TENSOR_SHAPE, TENSOR_DATA)


class _Unusual(Exception):
    """The bytes are not a chunk event this decoder reads exactly; protobuf parses them instead."""


class RawChunk(NamedTuple):
    """A ResultChunk read from a JobEvent's bytes; ``data`` is a view of them (no copy)."""

    seq: int
    field: int
    start: int
    stop: int
    row_start: int
    row_stop: int
    shard: int
    dtype: int
    shape: tuple[int, ...]
    data: memoryview
    raw: memoryview  #: the serialized ResultChunk itself

    def message(self) -> job_pb2.ResultChunk:
        """The chunk as a ResultChunk message (parsed, so its data is copied)."""
        return job_pb2.ResultChunk.FromString(self.raw)


def _varint(buf: bytes, i: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= end or shift > 63:
            raise _Unusual
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7


def _skip(buf: bytes, i: int, end: int, wire: int) -> int:
    """The position after a field of an unknown number (proto3 keeps nothing of it here)."""
    if wire == VARINT:
        return _varint(buf, i, end)[1]
    if wire == 1:
        i += 8
    elif wire == 5:
        i += 4
    elif wire == LENGTH_DELIMITED:
        size, i = _varint(buf, i, end)
        i += size
    else:
        raise _Unusual
    if i > end:
        raise _Unusual
    return i


def _tensor(buf: bytes, i: int, end: int) -> tuple[int, tuple[int, ...], int, int]:
    """(dtype, shape, data start, data stop) of a Tensor in buf[i:end]."""
    dtype, shape, data, seen = 0, [], (i, i), set()
    while i < end:
        key, i = _varint(buf, i, end)
        number, wire = key >> 3, key & 7
        if number in seen and number != TENSOR_SHAPE:  # a repeated scalar or message: protobuf's merge rules apply
            raise _Unusual
        seen.add(number)
        if number == TENSOR_DTYPE and wire == VARINT:
            dtype, i = _varint(buf, i, end)
        elif number == TENSOR_SHAPE and wire == LENGTH_DELIMITED:  # packed shape
            size, i = _varint(buf, i, end)
            stop = i + size
            if stop > end:
                raise _Unusual
            while i < stop:
                dim, i = _varint(buf, i, stop)
                shape.append(dim)
        elif number == TENSOR_SHAPE and wire == VARINT:
            dim, i = _varint(buf, i, end)
            shape.append(dim)
        elif number == TENSOR_DATA and wire == LENGTH_DELIMITED:
            size, i = _varint(buf, i, end)
            data = (i, i + size)
            i += size
            if i > end:
                raise _Unusual
        elif number in _TENSOR_FIELDS:
            raise _Unusual
        else:
            i = _skip(buf, i, end, wire)
    return dtype, tuple(shape), data[0], data[1]


def _chunk(buf: bytes, i: int, end: int) -> RawChunk:
    numbers = dict.fromkeys(CHUNK_VARINTS.values(), 0)
    tensor: tuple[int, tuple[int, ...], int, int] = (0, (), i, i)
    seen: set[int] = set()
    first = i
    while i < end:
        key, i = _varint(buf, i, end)
        number, wire = key >> 3, key & 7
        if number in seen:
            raise _Unusual
        seen.add(number)
        name = CHUNK_VARINTS.get(number)
        if name is not None and wire == VARINT:
            numbers[name], i = _varint(buf, i, end)
        elif number == CHUNK_DATA and wire == LENGTH_DELIMITED:
            size, i = _varint(buf, i, end)
            if i + size > end:
                raise _Unusual
            tensor = _tensor(buf, i, i + size)
            i += size
        elif name is not None or number == CHUNK_DATA:
            raise _Unusual
        else:
            i = _skip(buf, i, end, wire)
    dtype, shape, a, b = tensor
    if numbers["shard"] >> 32 or numbers["field"] >> 31 or dtype >> 31:  # narrower than 64 bits: protobuf's casts
        raise _Unusual
    view = memoryview(buf)
    return RawChunk(**numbers, dtype=dtype, shape=shape, data=view[a:b], raw=view[first:end])


def decode_event(raw: bytes) -> job_pb2.JobEvent | RawChunk:
    """A serialized JobEvent: a RawChunk when it is one chunk event, else the parsed JobEvent."""
    if raw[:len(_CHUNK_EVENT)] == _CHUNK_EVENT:
        try:
            size, i = _varint(raw, len(_CHUNK_EVENT), len(raw))
            if i + size == len(raw):  # the chunk and nothing else
                return _chunk(raw, i, len(raw))
        except _Unusual:
            pass
    return job_pb2.JobEvent.FromString(raw)


def as_message(chunk: job_pb2.ResultChunk | RawChunk) -> job_pb2.ResultChunk:
    """A chunk as the ResultChunk message the SDK's ``chunks()`` yields."""
    return chunk.message() if isinstance(chunk, RawChunk) else chunk


def chunk_values(chunk: job_pb2.ResultChunk | RawChunk, place: str = "chunk.data") -> np.ndarray:
    """A chunk's values as a flat read-only array (a view of the received bytes for a RawChunk)."""
    if isinstance(chunk, RawChunk):
        header = tensor_pb2.Tensor(dtype=cast(tensor_pb2.DType, chunk.dtype), shape=chunk.shape)
        return array_from_tensor(header, place, data=chunk.data).reshape(-1)
    return array_from_tensor(chunk.data, place).reshape(-1)
