"""WatchJobs: many jobs' watches in one stream, read by one blocking XREAD over all their event streams.

A client waiting on many small jobs in turn would otherwise open one WatchJob per job (one call,
one record read and one blocking read each). Here the records are read in one round trip, every
job's stream in one XREAD, and each event goes out tagged with its job's name. A job whose watch
cannot go on gets one error event and leaves the set; the others go on.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

from google.protobuf.timestamp_pb2 import Timestamp

from edgegrad import metrics
from edgegrad.errors import EdgegradError, InvalidInput, NotFound, OutOfRange, Unavailable
from edgegrad.jobs.record import job_from_fields, job_id_from_name
from edgegrad.status import rich_status
from edgegrad.v1 import job_pb2, service_pb2
from edgegrad.wire.framing import chunk_event, jobs_event

from .service import Service, _retrieve

__all__ = ["watch_many", "MAX_WATCHES"]

#: jobs one WatchJobs call may watch
MAX_WATCHES = 1000
#: entries read per job stream and XREAD
_COUNT = 8


class _Watch:
    """One job of the set: where its stream is read from and the chunk seq expected next."""

    __slots__ = ("name", "job_id", "key", "last", "expected")

    def __init__(self, name: str, job_id: str, key: str, after_seq: int) -> None:
        self.name, self.job_id, self.key = name, job_id, key
        self.last, self.expected = f"{after_seq}-0", after_seq + 1

    def entry(self, entry_id: bytes, fields: dict) -> tuple[bytes, bool]:
        """The JobsEvent of one stream entry and whether it was the job's last; OutOfRange on a gap."""
        self.last = entry_id.decode()
        kind = fields.get(b"k")
        if kind == b"c":
            seq = int(self.last.split("-", 1)[0])
            if seq != self.expected:
                raise OutOfRange(f"after_seq: chunks {self.expected}..{seq - 1} were acknowledged and dropped while"
                                 " this watch read (a result larger than the buffer is read once)", field="after_seq")
            self.expected = seq + 1
            metrics.RESULT_BYTES_STREAMED.inc(len(fields[b"d"]))
            return jobs_event(self.name, chunk_event(seq, fields[b"d"])), False
        if kind == b"d":
            return jobs_event(self.name, job_pb2.JobEvent(done=job_from_fields(fields)).SerializeToString()), True
        if kind == b"s":
            return jobs_event(self.name, job_pb2.JobEvent(state=job_from_fields(fields)).SerializeToString()), False
        return b"", False


def _error(name: str, exc: EdgegradError) -> bytes:
    return jobs_event(name, error=rich_status(exc))


async def watch_many(service: Service, req: service_pb2.WatchJobsRequest, tenant: str) -> AsyncIterator[bytes]:
    """Each job's state, chunks after its ``after_seq``, heartbeats and final job, as serialized JobsEvents."""
    if len(req.watches) > MAX_WATCHES:
        raise InvalidInput(f"watches: {len(req.watches)} jobs, over the limit of {MAX_WATCHES} a call")
    store = service.store.for_tenant(tenant)
    ids = [job_id_from_name(w.name, f"watches[{i}].name") for i, w in enumerate(req.watches)]
    if len(set(ids)) != len(ids):
        raise InvalidInput("watches: a job is named more than once")
    async with store.redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hgetall(store.keys.job(job_id))
        records = await pipe.execute()
    active: dict[str, _Watch] = {}
    for w, job_id, fields in zip(req.watches, ids, records):
        name, after = f"jobs/{job_id}", int(w.after_seq)
        if not fields or b"state" not in fields:
            yield _error(w.name, NotFound(f"name: no job {name} (unknown, deleted or expired)", field="name"))
            continue
        current, acked = job_from_fields(fields), int(fields.get(b"acked", b"0"))
        if after > current.layout.chunk_count:
            yield _error(name, OutOfRange(f"after_seq: {after} is past the job's last chunk"
                                          f" ({current.layout.chunk_count})", field="after_seq"))
            continue
        if after < acked:
            yield _error(name, OutOfRange(f"after_seq: chunks up to {acked} were acknowledged and dropped; watch"
                                          f" from after_seq={acked} or later", field="after_seq"))
            continue
        yield jobs_event(name, job_pb2.JobEvent(state=current).SerializeToString())
        active[store.keys.events(job_id)] = _Watch(name, job_id, store.keys.events(job_id), after)
    block_ms = max(1, int(service.settings.heartbeat_seconds * 1000))
    while active:
        reply = await _read(service, store.streams, {k: w.last for k, w in active.items()}, block_ms)
        if not reply:
            async for event in _heartbeats(store, active):
                yield event
            continue
        for key, entries in reply:
            watch = active.get(key.decode() if isinstance(key, bytes) else key)
            if watch is None:
                continue
            for entry_id, fields in entries:
                try:
                    event, last = watch.entry(entry_id, fields)
                except OutOfRange as exc:
                    yield _error(watch.name, exc)
                    del active[watch.key]
                    break
                if event:
                    yield event
                if last:
                    del active[watch.key]
                    break


async def _read(service: Service, streams: Any, last: dict[str, str], block_ms: int) -> list:
    """One blocking XREAD of every watched stream that ends early on shutdown or when the caller goes."""
    if service.stopping.is_set():
        raise Unavailable("server is shutting down; watch again with after_seq to resume")
    read = asyncio.ensure_future(streams.xread(last, count=_COUNT, block=block_ms))
    stop = asyncio.ensure_future(service.stopping.wait())
    try:
        await asyncio.wait((read, stop), return_when=asyncio.FIRST_COMPLETED)
    finally:  # also when this watch is cancelled (client gone): no read is left behind
        stop.cancel()
        if not read.done():
            read.cancel()
            read.add_done_callback(_retrieve)
    if not read.done() or read.cancelled():
        raise Unavailable("server is shutting down; watch again with after_seq to resume")
    return read.result() or []


async def _heartbeats(store: Any, active: dict[str, _Watch]) -> AsyncIterator[bytes]:
    """A heartbeat for every job still watched (one round trip for all); gone jobs leave with NotFound."""
    async with store.redis.pipeline(transaction=False) as pipe:
        for watch in active.values():
            pipe.hmget(store.keys.job(watch.job_id), "state", "chunks_done")
        states = await pipe.execute()
    now = Timestamp()
    now.GetCurrentTime()
    for watch, (state, done) in zip(list(active.values()), states):
        if state is None:
            del active[watch.key]
            yield _error(watch.name, NotFound(f"name: job {watch.name} was deleted or expired", field="name"))
            continue
        beat = job_pb2.JobEvent(heartbeat=job_pb2.Heartbeat(state=int(state), chunks_done=int(done or 0), time=now))
        yield jobs_event(watch.name, beat.SerializeToString())
