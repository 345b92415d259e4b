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
from collections import deque
from collections.abc import Iterator
from typing import Any

import grpc

from edgegrad.v1 import job_pb2

from .alarms import ALARMS
from .grouping import sort_message, unsupported, watches_request
from .options import Deadline

__all__ = ["WatchGroup", "open_group"]


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
            request = watches_request(handles)
            self._call = client.stub.WatchJobs(request, metadata=client._metadata)  # each waiter's deadline cuts it
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
            if client is not None and unsupported(exc):
                client.unwatched.enabled = False  # an older server: watch one job at a time
            return
        name, event, last = sort_message(message)
        queue = self._pending.get(name)
        if queue is None:
            return
        if event is not None:
            queue.append(event)
        if last:  # its last event, or an error this job's own watch will meet and report
            self._ended.add(name)

    def __del__(self) -> None:
        call = self._call
        if call is not None:
            try:
                call.cancel()
            except Exception:  # interpreter shutdown
                pass


def open_group(handle: Any, client: Any) -> None:
    """If ``handle`` is among the client's unwatched handles, open one group for it and the next ones."""
    members = client.unwatched.take(handle, WatchGroup)
    if not members:
        return
    try:
        handle._group.open(client, members)
    except Exception:  # e.g. a closed channel: the group is broken, each member's own watch reports it
        pass
