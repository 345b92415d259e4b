"""``edgegrad.wait_all``: wait on many jobs at once."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Iterable

from edgegrad.v1 import job_pb2

from .aio import AsyncJobHandle
from .options import Deadline

__all__ = ["wait_all", "async_wait_all"]

#: threads that wait on blocking handles side by side (each reads, and acknowledges, its job's stream)
WAIT_THREADS = 128


def wait_all(handles: Iterable[Any], timeout: float | None = None) -> "list[job_pb2.Job] | Awaitable[list[job_pb2.Job]]":
    """Wait until every job ends; their final jobs in the handles' order.

    Blocking handles are waited on side by side in threads; with asyncio handles this returns an
    awaitable instead (``await edgegrad.wait_all(handles)``, the same as ``async_wait_all``).
    A failed job is returned like any other (its ``state`` and ``error`` say so); ``result()``
    on its handle raises its error.
    """
    handles = list(handles)
    if handles and all(isinstance(h, AsyncJobHandle) for h in handles):
        return async_wait_all(handles, timeout)
    if not handles:
        return []
    deadline = Deadline(timeout)  # one deadline for all of them
    with ThreadPoolExecutor(max_workers=min(WAIT_THREADS, len(handles)), thread_name_prefix="edgegrad-wait") as pool:
        return list(pool.map(lambda handle: handle.wait(deadline=deadline), handles))


async def async_wait_all(handles: Iterable[AsyncJobHandle], timeout: float | None = None) -> list[job_pb2.Job]:
    """Wait until every asyncio handle's job ends; their final jobs in order."""
    deadline = Deadline(timeout)
    return list(await asyncio.gather(*(handle.wait(deadline=deadline) for handle in handles)))
