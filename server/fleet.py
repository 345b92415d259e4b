"""How many workers serve the queue, from rq's registry of workers by queue, read again at most every few seconds.

A population job small enough for one shard by time and size is still cut so that every worker gets a part
(``population_shards``'s ``workers``): on a fleet of W idle workers it then takes about 1/W of the time.
The count is a hint, never a promise: a worker that died without unregistering counts until rq cleans its
registry, and one that starts later finds the job's shards queued like any other.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from rq.worker_registration import WORKERS_BY_QUEUE_KEY

__all__ = ["Fleet", "REFRESH_SECONDS"]

#: seconds a count is used before it is read again
REFRESH_SECONDS = 2.0


class Fleet:
    """``await workers()``: the workers registered for ``queue`` (1 at least), read through ``store``'s Redis at most
    every REFRESH_SECONDS; a stale count is answered at once while the new one is read in the background."""

    def __init__(self, store: Any, queue: str, refresh: float = REFRESH_SECONDS) -> None:
        self._store, self._key, self._refresh = store, WORKERS_BY_QUEUE_KEY % queue, refresh
        self._count: int | None = None
        self._read_at = float("-inf")
        self._reading: asyncio.Task[None] | None = None

    async def workers(self) -> int:
        """The count (the first call reads it; later ones answer the last count read)."""
        if self._count is None:
            await self._read()
        elif time.monotonic() - self._read_at > self._refresh and self._reading is None:
            self._reading = asyncio.ensure_future(self._read())
            self._reading.add_done_callback(self._read_done)
        return max(1, self._count or 0)

    async def _read(self) -> None:
        self._read_at = time.monotonic()
        try:
            self._count = int(await self._store.redis.scard(self._key))
        except Exception:  # a hint only: Redis trouble surfaces with the job's own commands
            self._count = self._count or 1

    def _read_done(self, task: asyncio.Task[None]) -> None:
        self._reading = None
