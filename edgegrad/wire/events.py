"""A watch stream's events as the client reads them: chunk events decoded by hand, zero-copy.

Parsing a JobEvent that carries a result chunk copies its data twice (into the message, then into
a new ``bytes`` on each access of ``Tensor.data``); a client that assembles a large result pays that
on every byte. ``decode_event`` reads the few numbers of a chunk event itself and keeps its data as
a view of the received bytes, so the assembler copies each byte once, into place. Anything it does
not recognise exactly (another event, a field repeated, a wire type it does not expect) is parsed
by protobuf as before, so what a client sees never depends on which road was taken.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..v1 import job_pb2, tensor_pb2

__all__ = ["RawChunk", "decode_event", "as_message", "chunk_values"]

_CHUNK_EVENT = 0x12  # JobEvent.chunk = 2, length-delimited
#: ResultChunk's varint fields by number (8 is its Tensor)
_CHUNK_NUMBERS = {1: "seq", 2: "field", 3: "start", 4: "stop", 5: "row_start", 6: "row_stop", 7: "shard"}


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
    if wire == 0:
        return _varint(buf, i, end)[1]
    if wire == 1:
        i += 8
    elif wire == 5:
        i += 4
    elif wire == 2:
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
        if number in seen and number != 2:  # a repeated scalar or message: protobuf's merge rules apply
            raise _Unusual
        seen.add(number)
        if number == 1 and wire == 0:
            dtype, i = _varint(buf, i, end)
        elif number == 2 and wire == 2:  # packed shape
            size, i = _varint(buf, i, end)
            stop = i + size
            if stop > end:
                raise _Unusual
            while i < stop:
                dim, i = _varint(buf, i, stop)
                shape.append(dim)
        elif number == 2 and wire == 0:
            dim, i = _varint(buf, i, end)
            shape.append(dim)
        elif number == 3 and wire == 2:
            size, i = _varint(buf, i, end)
            data = (i, i + size)
            i += size
            if i > end:
                raise _Unusual
        elif number in (1, 2, 3):
            raise _Unusual
        else:
            i = _skip(buf, i, end, wire)
    return dtype, tuple(shape), data[0], data[1]


def _chunk(buf: bytes, i: int, end: int) -> RawChunk:
    numbers = dict.fromkeys(_CHUNK_NUMBERS.values(), 0)
    tensor = (0, (), i, i)
    seen: set[int] = set()
    first = i
    while i < end:
        key, i = _varint(buf, i, end)
        number, wire = key >> 3, key & 7
        if number in seen:
            raise _Unusual
        seen.add(number)
        name = _CHUNK_NUMBERS.get(number)
        if name is not None and wire == 0:
            numbers[name], i = _varint(buf, i, end)
        elif number == 8 and wire == 2:
            size, i = _varint(buf, i, end)
            if i + size > end:
                raise _Unusual
            tensor = _tensor(buf, i, i + size)
            i += size
        elif name is not None or number == 8:
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
    if raw[:1] == bytes([_CHUNK_EVENT]):
        try:
            size, i = _varint(raw, 1, len(raw))
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
    from .codec import array_from_tensor

    if isinstance(chunk, RawChunk):
        header = tensor_pb2.Tensor(dtype=chunk.dtype, shape=chunk.shape)
        return array_from_tensor(header, place, data=chunk.data).reshape(-1)
    return array_from_tensor(chunk.data, place).reshape(-1)
