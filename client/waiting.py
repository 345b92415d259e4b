"""``edgegrad.wait_all``: wait on many jobs at once, straight from ``submit_many``'s answers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from edgegrad.v1 import job_pb2

from .aiojob import AsyncJobHandle
from .job import JobHandle
from .options import Deadline

__all__ = ["wait_all", "async_wait_all"]

#: threads that wait on blocking handles side by side (each reads, and acknowledges, its job's stream)
WAIT_THREADS = 128



def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def wait_all(handles: Iterable[Any], timeout: float | None = None
             ) -> list[job_pb2.Job | Exception] | Awaitable[list[job_pb2.Job | Exception]]:
    """Wait until every job ends: one entry per item, in order, the job's final ``Job`` record or,
    where ``submit_many`` answered an item with an error, that error in its place.

    Takes ``submit_many``'s list as it is (or any handles). Blocking handles are waited on side by
    side in threads; with asyncio handles (or, inside a running event loop, no blocking handle at
    all) this returns an awaitable instead (``await edgegrad.wait_all(...)``, as ``async_wait_all``).
    A failed job is returned like any other (its ``state`` and ``error`` say so); ``result()``
    on its handle raises its error.
    """
    items = list(handles)
    deadline = Deadline(timeout)  # one deadline for all of them (checked first)
    if any(isinstance(h, AsyncJobHandle) for h in items) or (
            _in_event_loop() and not any(isinstance(h, JobHandle) for h in items)):
        return async_wait_all(items, timeout)
    waiting = [h for h in items if not isinstance(h, Exception)]
    if not waiting:
        return items
    with ThreadPoolExecutor(max_workers=min(WAIT_THREADS, len(waiting)), thread_name_prefix="edgegrad-wait") as pool:
        finals = iter(list(pool.map(lambda handle: handle.wait(deadline=deadline), waiting)))
    return [item if isinstance(item, Exception) else next(finals) for item in items]


async def async_wait_all(handles: Iterable[Any], timeout: float | None = None) -> list[job_pb2.Job | Exception]:
    """Wait until every asyncio handle's job ends: their final jobs in order, ``submit_many``'s errors in place."""
    deadline = Deadline(timeout)
    items = list(handles)

    async def settle(item: Any) -> Any:
        return item if isinstance(item, Exception) else await item.wait(deadline=deadline)

    return list(await asyncio.gather(*(settle(item) for item in items)))
