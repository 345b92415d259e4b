"""A job's event stream as watchers read it: its entries decoded, and the chunk seqs a watch may read.

The scripts (``scripts.py``) write the stream: chunk ``s`` is entry ``s-0`` with ``k`` = ``c`` and
its serialized ResultChunk in ``d`` (or, for a large chunk, in the job's chunk key ``s``); state
events (``k`` = ``s``) and the final event (``k`` = ``d``) carry a snapshot of the job hash.
``AckJob`` trims the chunks a client holds (the hash's ``acked``), so a watch may start only after
them, and a watch that finds a gap read too slowly for the result buffer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from ..errors import OutOfRange
from ..v1 import job_pb2
from .record import job_from_fields

__all__ = ["CHUNK", "STATE", "DONE", "StreamEntry", "stream_entry", "StreamCursor", "acked_chunks",
           "check_after_seq"]

#: an entry's kind: a result chunk, a state event, the final event
CHUNK, STATE, DONE = "chunk", "state", "done"
_KINDS = {b"c": CHUNK, b"s": STATE, b"d": DONE}


class StreamEntry(NamedTuple):
    """One entry of a job's stream."""

    id: str  #: the entry id, ``seq-n``
    kind: str  #: CHUNK, STATE, DONE, or "" for a kind this reader does not know
    seq: int  #: a chunk's seq (its place in the result's chunks)
    #: a chunk's serialized ResultChunk (seq left out); None while it is in its chunk key (a large chunk: see
    #: ``JobStore.with_chunk_data``), or when that key is gone
    data: bytes | bytearray | None
    fields: Mapping[bytes, bytes]  #: a state or final event's snapshot of the job hash

    def job(self) -> job_pb2.Job:
        """The Job a state or final event carries."""
        return job_from_fields(self.fields)


def stream_entry(entry_id: bytes, fields: Mapping[bytes, bytes]) -> StreamEntry:
    """An entry as XREAD returns it (id, fields), decoded."""
    text = entry_id.decode()
    kind = _KINDS.get(fields.get(b"k", b""), "")
    if kind == CHUNK:
        return StreamEntry(text, kind, int(text.split("-", 1)[0]), fields.get(b"d"), {})
    return StreamEntry(text, kind, 0, None, fields)


def acked_chunks(fields: Mapping[bytes, bytes]) -> int:
    """The chunks a client acknowledged (dropped from the stream) of a job hash."""
    return int(fields.get(b"acked", b"0"))


def check_after_seq(job: job_pb2.Job, acked: int, after_seq: int) -> None:
    """OutOfRange unless a watch of ``job`` may start after chunk ``after_seq`` (``acked`` chunks were dropped)."""
    if after_seq > job.layout.chunk_count:
        raise OutOfRange(f"after_seq: {after_seq} is past the job's last chunk ({job.layout.chunk_count})",
                         field="after_seq")
    if after_seq < acked:
        raise OutOfRange(f"after_seq: chunks up to {acked} were acknowledged and dropped; watch from"
                         f" after_seq={acked} or later", field="after_seq")


class StreamCursor:
    """Where one watch is in a job's stream: the entry id to read after and the chunk seq it expects next."""

    __slots__ = ("last", "expected")

    def __init__(self, after_seq: int) -> None:
        self.last = f"{int(after_seq)}-0"
        self.expected = int(after_seq) + 1

    def take(self, entry: StreamEntry) -> StreamEntry:
        """Move past ``entry``; OutOfRange (``dropped``) when it is a chunk after a gap."""
        self.last = entry.id
        if entry.kind == CHUNK:
            if entry.seq != self.expected:
                raise self.dropped(entry.seq)
            self.expected = entry.seq + 1
        return entry

    def dropped(self, seq: int) -> OutOfRange:
        """The error of a watch that reached chunk ``seq`` after the client's acknowledgements dropped the
        chunks it expected (or that chunk itself) while it read."""
        return OutOfRange(f"after_seq: chunks {self.expected}..{max(self.expected, seq - 1)} were acknowledged"
                          " and dropped while this watch read (a result larger than the buffer is read once)",
                          field="after_seq")
