"""Many small jobs of one blocking client watched in one WatchJobs stream.

A loop of ``submit()`` then ``wait()`` beyond the streams opened at submit would open one WatchJob
per job, each a round trip of its own. Instead, the first such wait opens one WatchJobs stream for
the job and the next small jobs the client submitted without a stream (up to GROUP_SIZE, in
submission order); every later wait on one of them reads what the stream already brought. The
group is only a shortcut: a job whose watch ends in the group without its final event (an error,
the stream dropped, a deadline) goes on with its own WatchJob from the last seq it has, as before.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict, deque
from typing import Any, Iterator

import grpc

from edgegrad.v1 import job_pb2, service_pb2
from edgegrad.wire.chunking import buffered_chunk_limit
from edgegrad.wire.codec import result_bytes

from .alarms import ALARMS
from .options import Deadline

__all__ = ["WatchGroup", "Unwatched", "GROUP_SIZE", "GROUP_RESULT_BYTES"]

#: jobs one WatchJobs stream watches at most (the server takes up to 1000)
GROUP_SIZE = 256
#: results up to this size may wait in a group's memory until their handle is waited on
GROUP_RESULT_BYTES = 64 << 10


class WatchGroup:
    """One WatchJobs stream shared by several handles; each reads its own job's events from it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()  # held until ``open``: a waiter that finds its group already waits for the stream
        self._call: Any = None
        self._pending: dict[str, deque[job_pb2.JobEvent]] = {}
        self._ended: set[str] = set()  #: jobs whose watch in the group is over (their last event, or an error)
        self.broken = False

    def open(self, client: Any, handles: list[Any]) -> None:
        """Start the stream for ``handles`` (each from the seq it has) and let waiters in."""
        try:
            self._pending = {h.name: deque() for h in handles}
            request = service_pb2.WatchJobsRequest(watches=[
                service_pb2.WatchJobRequest(name=h.name, after_seq=h.state.after_seq) for h in handles])
            self._call = client.stub.WatchJobs(request, metadata=client.metadata)  # each waiter's deadline cuts it
            self._client = weakref.ref(client)
        except BaseException:
            self.broken = True
            raise
        finally:
            self._lock.release()

    def events(self, name: str, deadline: Deadline) -> Iterator[job_pb2.JobEvent]:
        """The events of job ``name`` until its last one; ends early when the group can bring no more of them."""
        left = deadline.remaining()
        alarm = ALARMS.after(left, self._cut) if left is not None else None
        try:
            while True:
                with self._lock:
                    queue = self._pending.get(name)
                    if queue:
                        event = queue.popleft()
                    elif queue is None or name in self._ended or self.broken:
                        self._pending.pop(name, None)
                        return
                    else:
                        self._read_one()
                        continue
                yield event
        finally:
            if alarm is not None:
                alarm.cancel()

    def _cut(self) -> None:
        """A waiter's deadline passed: stop the stream (every job still in it goes on by itself)."""
        if self._call is not None:
            self._call.cancel()

    def _read_one(self) -> None:
        """Read one message and put it in its job's queue (called with the lock held)."""
        try:
            message = next(self._call)
        except StopIteration:
            self.broken = True
            return
        except grpc.RpcError as exc:
            self.broken = True
            client = self._client()
            if client is not None and exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                client.unwatched.enabled = False  # an older server: watch one job at a time
            return
        queue = self._pending.get(message.name)
        if queue is None:
            return
        if message.HasField("error"):  # this job's own watch will meet the same error and report it
            self._ended.add(message.name)
            return
        queue.append(message.event)
        if message.event.WhichOneof("event") == "done":
            self._ended.add(message.name)

    def __del__(self) -> None:
        call = self._call
        if call is not None:
            try:
                call.cancel()
            except Exception:  # interpreter shutdown
                pass


class Unwatched:
    """A client's handles of small unfinished jobs submitted without a stream, in submission order."""

    def __init__(self) -> None:
        self._handles: OrderedDict[str, weakref.ref] = OrderedDict()
        self._lock = threading.Lock()
        self.enabled = True  #: False once the server turned out not to know WatchJobs

    def add(self, handle: Any) -> None:
        """Note a handle a group may watch: a small result, not ended yet."""
        job = handle.state.job
        if not self.enabled or handle.state.done or job is None or result_bytes(job.layout) > GROUP_RESULT_BYTES:
            return
        limit = buffered_chunk_limit(job.layout)
        if limit and job.layout.chunk_count > limit:  # read once, acknowledged as read: its own watch does that
            return
        with self._lock:
            self._handles[handle.name] = weakref.ref(handle)

    def take(self, handle: Any, client: Any) -> None:
        """If ``handle`` is noted, give it and the next noted handles one group (``handle._group``), opened here."""
        with self._lock:
            if self._handles.pop(handle.name, None) is None:
                return
            members = [handle]
            while self._handles and len(members) < GROUP_SIZE:
                _, ref = self._handles.popitem(last=False)
                other = ref()
                if other is not None and not other.state.done and other._group is None:
                    members.append(other)
            if len(members) == 1:
                return  # alone: its own WatchJob costs the same
            group = WatchGroup()
            for member in members:
                member._group = group
        try:
            group.open(client, members)
        except Exception:  # e.g. a closed channel: the group is broken, each member's own watch reports it
            pass
