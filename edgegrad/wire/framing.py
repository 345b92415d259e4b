"""Protobuf written by hand where a message object would copy megabytes; every field number from the descriptors.

A result chunk never becomes a message on its way from worker to client: the worker frames its
data behind a small header (``chunk_pieces``), the server puts the chunk's seq in front and wraps
it as a JobEvent (``chunk_event``) and, for WatchJobs, a JobsEvent (``jobs_event``), and the client
reads the numbers back by hand (``rawchunk.py``). The field numbers all of them use are read here
from the generated descriptors (``edgegrad/v1/*_pb2.py``), so a renumbered field cannot leave the
hand-built bytes behind; tests/test_wire_framing.py checks the bytes against protobuf's own.
"""

from __future__ import annotations

import functools
from typing import Any

from google.protobuf.message import Message
from google.rpc import status_pb2

from ..v1 import job_pb2, service_pb2, tensor_pb2

__all__ = ["VARINT", "LENGTH_DELIMITED", "field_number", "CHUNK_VARINTS", "CHUNK_DATA", "TENSOR_DTYPE",
           "TENSOR_SHAPE", "TENSOR_DATA", "EVENT_CHUNK", "varint", "field_key", "length_delimited",
           "chunk_pieces", "chunk_event", "jobs_event"]

#: protobuf wire types
VARINT, LENGTH_DELIMITED = 0, 2


def field_number(message: type[Message], name: str) -> int:
    """The number of field ``name`` of a generated message class, from its descriptor."""
    return message.DESCRIPTOR.fields_by_name[name].number


#: ResultChunk's varint fields: number -> name (seq, field, start, stop, row_start, row_stop, shard)
CHUNK_VARINTS = {field_number(job_pb2.ResultChunk, name): name
                 for name in ("seq", "field", "start", "stop", "row_start", "row_stop", "shard")}
#: ResultChunk.data, the chunk's Tensor
CHUNK_DATA = field_number(job_pb2.ResultChunk, "data")
_CHUNK_SEQ = field_number(job_pb2.ResultChunk, "seq")
TENSOR_DTYPE = field_number(tensor_pb2.Tensor, "dtype")
TENSOR_SHAPE = field_number(tensor_pb2.Tensor, "shape")
TENSOR_DATA = field_number(tensor_pb2.Tensor, "data")
#: JobEvent.chunk
EVENT_CHUNK = field_number(job_pb2.JobEvent, "chunk")
_JOBS_NAME = field_number(service_pb2.JobsEvent, "name")
_JOBS_EVENT = field_number(service_pb2.JobsEvent, "event")
_JOBS_ERROR = field_number(service_pb2.JobsEvent, "error")


def varint(value: int) -> bytes:
    """A non-negative integer in protobuf's varint encoding."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


@functools.cache
def field_key(number: int, wire: int) -> bytes:
    """The key (tag) that starts field ``number`` of wire type ``wire``."""
    return varint((number << 3) | wire)


_SEQ_KEY = field_key(_CHUNK_SEQ, VARINT)


def length_delimited(number: int, parts: list[Any]) -> list[Any]:
    """The pieces of a length-delimited field ``number`` holding ``parts`` (bytes-like), unjoined."""
    size = sum(p.nbytes if isinstance(p, memoryview) else len(p) for p in parts)
    return [field_key(number, LENGTH_DELIMITED), varint(size), *parts]


def chunk_pieces(header: bytes, tensor_header: bytes, data: memoryview) -> list[Any]:
    """A serialized ResultChunk in pieces: its ``header`` (the chunk's numbers), then its Tensor, whose
    ``tensor_header`` (dtype, shape) is followed by ``data`` as it is (a view: no copy)."""
    return [header, *length_delimited(CHUNK_DATA, [tensor_header, *length_delimited(TENSOR_DATA, [data])])]


def chunk_event(seq: int, chunk: bytes | bytearray) -> bytes:
    """A serialized JobEvent carrying ``chunk`` (a ResultChunk written without seq) with its ``seq``.

    Protobuf fields may come in any order, so the seq field is put in front of the worker's bytes
    and the whole wrapped as JobEvent.chunk: no parse and no re-serialize of megabytes of data.
    """
    return b"".join(length_delimited(EVENT_CHUNK, [_SEQ_KEY + varint(seq), chunk]))


def jobs_event(name: str, event: bytes = b"", error: status_pb2.Status | None = None) -> bytes:
    """A serialized JobsEvent around a serialized JobEvent (chunks pass through unparsed), or an error."""
    parts = length_delimited(_JOBS_NAME, [name.encode()])
    if error is not None:
        parts += length_delimited(_JOBS_ERROR, [error.SerializeToString()])
    else:
        parts += length_delimited(_JOBS_EVENT, [event])
    return b"".join(parts)
