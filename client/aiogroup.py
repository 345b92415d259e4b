"""Many small jobs of one asyncio client watched in one WatchJobs stream: the twin of ``group.py``.

The first ``wait()`` (``result()``, ``chunks()``) on a handle submitted without a stream opens one
WatchJobs stream for it and the next small jobs the client submitted that way (``grouping.Unwatched``
chooses them, as for the blocking client). One reader task reads the stream and puts each job's
events in that job's queue; each waiter reads its own queue. The group is only a shortcut: a job
whose watch ends in the group without its final event (an error, the stream dropped or ended, a
deadline, an older server) goes on with its own WatchJob from the last seq it has.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from typing import Any

import grpc.aio

from edgegrad.v1 import job_pb2

from .grouping import sort_message, unsupported, watches_request
from .options import Deadline

__all__ = ["AsyncWatchGroup", "open_async_group"]

#: messages between two looks for members whose handles are gone (the reader stops when none is left)
SWEEP = 32


class AsyncWatchGroup:
    """One WatchJobs stream shared by several asyncio handles; a reader task feeds one queue per job."""

    def __init__(self) -> None:
        self._queues: dict[str, asyncio.Queue[job_pb2.JobEvent | None]] = {}  # None: no more from the group
        self._members: dict[str, weakref.ref] = {}
        self._call: Any = None
        self._task: asyncio.Task[None] | None = None
        self._abandoned = False  #: a member's handle went away before its job's last event
        self.broken = False

    def open(self, client: Any, handles: list[Any]) -> None:
        """Start the stream for ``handles`` (each from the seq it has) and its reader task."""
        self._queues = {h.name: asyncio.Queue() for h in handles}
        self._members = {h.name: weakref.ref(h) for h in handles}
        try:
            self._call = client.stub.WatchJobs(watches_request(handles), metadata=client._metadata)
        except Exception:  # e.g. a closed channel: each member's own watch reports it
            self._end()
            return
        self._task = asyncio.get_running_loop().create_task(self._read(weakref.ref(client)))
        client.groups.add(self)

    async def events(self, name: str, deadline: Deadline) -> AsyncIterator[job_pb2.JobEvent]:
        """The events of job ``name`` until its last one; ends early when the group can bring no more of them."""
        queue = self._queues.get(name)
        if queue is None:
            return
        while True:
            left = deadline.remaining()
            try:
                event = await (queue.get() if left is None else asyncio.wait_for(queue.get(), left))
            except asyncio.TimeoutError:
                self.close()  # as the blocking group: stop the stream; every job still in it goes on by itself
                event = None
            if event is None:
                self._queues.pop(name, None)
                return
            yield event

    def close(self) -> None:
        """Stop the stream and its reader (the client closes, or a waiter's deadline passed)."""
        if self._call is not None:
            self._call.cancel()
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        self._end()

    async def stopped(self) -> None:
        """Wait until the reader task has ended."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _read(self, client_ref: weakref.ref) -> None:
        """Read the stream to its end, each message into its job's queue; then end every queue still open."""
        try:
            read = 0
            while True:
                if read % SWEEP == 0 and not self._live() and self._abandoned:
                    return  # no handle is left to read for: stop the stream
                message = await self._call.read()  # after the last job's last event: the server's end
                read += 1
                if message is grpc.aio.EOF:
                    return
                name, event, last = sort_message(message)
                queue = self._queues.get(name)
                if queue is None:
                    continue
                if event is not None:
                    queue.put_nowait(event)
                if last:  # its last event, or an error this job's own watch will meet and report
                    queue.put_nowait(None)
                    self._members.pop(name, None)
        except asyncio.CancelledError:
            pass  # the call or this task was cancelled: close() or the client closing
        except Exception as exc:  # a failed stream: each job still in it goes on by its own watch
            client = client_ref()
            if client is not None and unsupported(exc):
                client.unwatched.enabled = False  # an older server: watch one job at a time
        finally:
            self._call.cancel()
            self._end()
            client = client_ref()
            if client is not None:
                client.groups.discard(self)

    def _live(self) -> bool:
        """Whether any member still waits for events: a job not ended whose handle is still referenced."""
        for name, ref in list(self._members.items()):
            if ref() is None:
                self._abandoned = True
                del self._members[name]
                self._queues.pop(name, None)
        return bool(self._members)

    def _end(self) -> None:
        """No more events from the group: wake every waiter still reading it."""
        if self.broken:
            return
        self.broken = True
        for name in self._members:
            queue = self._queues.get(name)
            if queue is not None:
                queue.put_nowait(None)
        self._members.clear()


def open_async_group(handle: Any, client: Any) -> None:
    """If ``handle`` is among the client's unwatched handles, open one group for it and the next ones."""
    members = client.unwatched.take(handle, AsyncWatchGroup)
    if members:
        handle._group.open(client, members)
