"""WatchJobs: many jobs' watches in one stream, read by one blocking XREAD over all their event streams.

A client waiting on many small jobs in turn would otherwise open one WatchJob per job (one call,
one record read and one blocking read each). Here the records are read in one round trip, every
job's stream in one XREAD, and each event goes out tagged with its job's name. A job whose watch
cannot go on gets one error event and leaves the set; the others go on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from google.protobuf.timestamp_pb2 import Timestamp

from edgegrad import metrics
from edgegrad.errors import EdgegradError, InvalidInput, NotFound, OutOfRange
from edgegrad.jobs.record import job_from_fields, job_id_from_name
from edgegrad.jobs.server_store import JobStore
from edgegrad.jobs.stream import CHUNK, DONE, STATE, StreamCursor, StreamEntry, acked_chunks, check_after_seq
from edgegrad.status import rich_status
from edgegrad.v1 import job_pb2, service_pb2
from edgegrad.wire.framing import chunk_event, jobs_event

from .service import Service

__all__ = ["watch_many", "MAX_WATCHES"]

#: jobs one WatchJobs call may watch
MAX_WATCHES = 1000
#: entries read per job stream and XREAD
_COUNT = 8


class _Watch:
    """One job of the set: its name and where it is in its stream."""

    __slots__ = ("name", "job_id", "cursor")

    def __init__(self, name: str, job_id: str, after_seq: int) -> None:
        self.name, self.job_id, self.cursor = name, job_id, StreamCursor(after_seq)

    def entry(self, entry: StreamEntry) -> tuple[bytes, bool]:
        """The JobsEvent of one stream entry (a chunk's data read in) and whether it was the job's last;
        OutOfRange on a gap."""
        self.cursor.take(entry)
        if entry.kind == CHUNK and entry.data is not None:
            metrics.RESULT_BYTES_STREAMED.inc(len(entry.data))
            return jobs_event(self.name, chunk_event(entry.seq, entry.data)), False
        if entry.kind == DONE:
            return jobs_event(self.name, job_pb2.JobEvent(done=entry.job()).SerializeToString()), True
        if entry.kind == STATE:
            return jobs_event(self.name, job_pb2.JobEvent(state=entry.job()).SerializeToString()), False
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
    records = await store.jobs_fields(ids)
    active: dict[str, _Watch] = {}
    for w, job_id, fields in zip(req.watches, ids, records):
        name, after = f"jobs/{job_id}", int(w.after_seq)
        if not fields or b"state" not in fields:
            yield _error(w.name, NotFound(f"name: no job {name} (unknown, deleted or expired)", field="name"))
            continue
        current = job_from_fields(fields)
        try:
            check_after_seq(current, acked_chunks(fields), after)
        except OutOfRange as exc:
            yield _error(name, exc)
            continue
        yield jobs_event(name, job_pb2.JobEvent(state=current).SerializeToString())
        active[job_id] = _Watch(name, job_id, after)
    block_ms = max(1, int(service.settings.heartbeat_seconds * 1000))
    while active:
        last = {job_id: w.cursor.last for job_id, w in active.items()}
        reply = await service.until_stopping(store.read_many(last, block_ms, count=_COUNT))
        if not reply:
            async for event in _heartbeats(store, active):
                yield event
            continue
        for job_id, entries in reply:
            watch = active.get(job_id)
            if watch is None:
                continue
            for entry in await store.with_chunk_data(job_id, entries):
                try:
                    if entry.kind == CHUNK and entry.data is None:
                        raise await store.lost_chunk(job_id, watch.cursor, entry.seq)
                    event, ended = watch.entry(entry)
                except (NotFound, OutOfRange) as exc:
                    yield _error(watch.name, exc)
                    del active[watch.job_id]
                    break
                if event:
                    yield event
                if ended:
                    del active[watch.job_id]
                    break


async def _heartbeats(store: JobStore, active: dict[str, _Watch]) -> AsyncIterator[bytes]:
    """A heartbeat for every job still watched (one round trip for all); gone jobs leave with NotFound."""
    states = await store.job_states(list(active))
    now = Timestamp()
    now.GetCurrentTime()
    for watch, state in zip(list(active.values()), states):
        if state is None:
            del active[watch.job_id]
            yield _error(watch.name, NotFound(f"name: job {watch.name} was deleted or expired", field="name"))
            continue
        beat = job_pb2.JobEvent(heartbeat=job_pb2.Heartbeat(state=state[0], chunks_done=state[1], time=now))
        yield jobs_event(watch.name, beat.SerializeToString())
