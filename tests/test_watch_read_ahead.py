"""When a watch reads its job's next batch while it sends one: only after chunks, never after the end, and never
with more than READ_AHEAD_BYTES of chunks held (a watch holds at most two batches)."""

from __future__ import annotations

from edgegrad.jobs.stream import CHUNK, DONE, STATE, StreamEntry
from edgegrad.server.service import READ_AHEAD_BYTES, _read_ahead


def chunk(seq: int, size: int) -> StreamEntry:
    return StreamEntry(f"{seq}-0", CHUNK, seq, bytes(size), {})


def event(kind: str, seq: int) -> StreamEntry:
    return StreamEntry(f"{seq}-1", kind, 0, None, {b"state": b"2"})


def test_a_batch_of_chunks_is_followed_by_a_read_ahead() -> None:
    assert _read_ahead([chunk(1, 100), chunk(2, 100)])
    assert _read_ahead([event(STATE, 0), chunk(1, 100)])
    assert _read_ahead([chunk(1, READ_AHEAD_BYTES // 2), chunk(2, READ_AHEAD_BYTES // 2)])


def test_no_read_ahead_after_the_end_without_chunks_or_past_the_byte_bound() -> None:
    assert not _read_ahead([chunk(1, 100), event(DONE, 1)])
    assert not _read_ahead([event(STATE, 0)])
    assert not _read_ahead([chunk(1, READ_AHEAD_BYTES), chunk(2, 1)])
