"""What the blocking and the asyncio shared watches (``group.py``, ``aiogroup.py``) decide alike, free of I/O.

Which handles a group may watch (small results, not ended, submitted without a stream), which of them
one group takes (the first waited on and the next ones in submission order, up to GROUP_SIZE), the
WatchJobs request, how each message of the stream is sorted to its job, and which failure means the
server does not know WatchJobs.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import grpc

from edgegrad.v1 import job_pb2, service_pb2
from edgegrad.wire.chunking import buffered_chunk_limit, result_bytes

__all__ = ["GROUP_SIZE", "GROUP_RESULT_BYTES", "Unwatched", "Sorted", "sort_message", "watches_request",
           "unsupported"]

#: jobs one WatchJobs stream watches at most (the server takes up to 1000)
GROUP_SIZE = 256
#: results up to this size may wait in a group's memory until their handle is waited on
GROUP_RESULT_BYTES = 64 << 10


class Sorted(NamedTuple):
    """One WatchJobs message sorted to its job: the event to pass on (None: none) and whether the job's
    watch in the group is over (its last event, or an error its own watch will meet and report)."""

    name: str
    event: job_pb2.JobEvent | None
    last: bool


def sort_message(message: service_pb2.JobsEvent) -> Sorted:
    """Where one message of the stream goes."""
    if message.HasField("error"):
        return Sorted(message.name, None, True)
    return Sorted(message.name, message.event, message.event.WhichOneof("event") == "done")


def watches_request(handles: Sequence[Any]) -> service_pb2.WatchJobsRequest:
    """The WatchJobs request for ``handles``, each from the seq it has."""
    return service_pb2.WatchJobsRequest(watches=[
        service_pb2.WatchJobRequest(name=h.name, after_seq=h.state.after_seq) for h in handles])


def unsupported(exc: BaseException) -> bool:
    """Whether the stream failed because the server does not know WatchJobs (an older server)."""
    return isinstance(exc, grpc.RpcError) and exc.code() == grpc.StatusCode.UNIMPLEMENTED


class Unwatched:
    """A client's handles of small unfinished jobs submitted without a stream, in submission order."""

    def __init__(self) -> None:
        self._handles: OrderedDict[str, weakref.ref] = OrderedDict()
        self._lock = threading.Lock()  # the blocking client's threads; uncontended under asyncio
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

    def take(self, handle: Any, make_group: Callable[[], Any]) -> list[Any]:
        """If ``handle`` is noted, give it and the next noted handles one group (``make_group()``, set as
        each member's ``_group`` before any other waiter can look); return the members, [] for none."""
        with self._lock:
            if self._handles.pop(handle.name, None) is None:
                return []
            members = [handle]
            while self._handles and len(members) < GROUP_SIZE:
                _, ref = self._handles.popitem(last=False)
                other = ref()
                if other is not None and not other.state.done and other._group is None:
                    members.append(other)
            if len(members) == 1:
                return []  # alone: its own WatchJob costs the same
            group = make_group()
            for member in members:
                member._group = group
            return members
