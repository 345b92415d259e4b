"""The one packing policy (edgegrad.jobs.packing) against a live Redis: a list of buffers, sent uncopied by
the worker's sync client and the server's asyncio connections, comes back as the one value it joins to
(the packing itself, with no Redis, is tests/test_packing.py)."""

from __future__ import annotations

import asyncio
import os
import secrets

import pytest
import redis.asyncio as aioredis

from edgegrad.jobs.connections import async_blocking_pool, async_redis
from edgegrad.jobs.worker_store import worker_redis
from edgegrad.settings import Settings


def _round_trip_values() -> tuple[list, bytes]:
    pieces = [b"\r\n$3\r\n", memoryview(os.urandom(3 << 20)).cast("B"), b"", os.urandom(7000), b"end"]
    return pieces, b"".join(pieces)


def test_a_list_of_buffers_round_trips_through_redis_sync(redis_url: str) -> None:
    r = worker_redis(Settings.from_env(redis_url=redis_url))
    key = f"egtest-packing-{secrets.token_hex(6)}"
    pieces, whole = _round_trip_values()
    try:
        assert r.execute_command("SET", key, pieces, "PX", 60000)
        assert r.get(key) == whole
        pipe = r.pipeline(transaction=False)
        pipe.execute_command("SET", key, pieces[::-1], "PX", 60000)
        pipe.strlen(key)
        assert pipe.execute() == [True, len(whole)]
        assert r.get(key) == b"".join(pieces[::-1])
    finally:
        r.delete(key)
        r.close()


@pytest.mark.parametrize("kind", ["async", "async-blocking"])
def test_a_list_of_buffers_round_trips_through_redis_async(kind: str, redis_url: str) -> None:
    key = f"egtest-packing-{secrets.token_hex(6)}"
    pieces, whole = _round_trip_values()

    async def main() -> None:
        s = Settings.from_env(redis_url=redis_url)
        r = async_redis(s) if kind == "async" else aioredis.Redis(connection_pool=async_blocking_pool(s))
        try:
            assert await r.execute_command("SET", key, pieces, "PX", 60000)
            assert await r.get(key) == whole
            pipe = r.pipeline(transaction=False)
            pipe.execute_command("SET", key, pieces[::-1], "PX", 60000)
            pipe.strlen(key)
            assert await pipe.execute() == [True, len(whole)]
            assert await r.get(key) == b"".join(pieces[::-1])
        finally:
            await r.delete(key)
            await r.aclose()

    asyncio.run(main())
