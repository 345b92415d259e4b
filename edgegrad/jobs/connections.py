"""Connections to Redis made from the settings: the URL (user, password, ``rediss://`` TLS) and the CA file."""

from __future__ import annotations

import functools
from typing import Any

import hiredis
import redis
import redis.asyncio as aioredis

from ..settings import Settings

__all__ = ["connection_options", "sync_redis", "async_redis", "async_blocking_pool"]


def connection_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments every Redis connection gets besides the URL (the CA file for ``rediss://``)."""
    return {"ssl_ca_certs": settings.redis_ca_file} if settings.redis_ca_file else {}


def sync_redis(settings: Settings, **kwargs: Any) -> redis.Redis:
    """A blocking client of the configured Redis."""
    return redis.Redis.from_url(settings.redis_url, **connection_options(settings), **kwargs)


def async_redis(settings: Settings, **kwargs: Any) -> aioredis.Redis:
    """An asyncio client of the configured Redis."""
    client = aioredis.Redis.from_url(settings.redis_url, **connection_options(settings), **kwargs)
    _pack_fast(client.connection_pool)
    return client


def async_blocking_pool(settings: Settings, **kwargs: Any) -> aioredis.BlockingConnectionPool:
    """An asyncio pool whose callers wait for a free connection when all are busy."""
    return _pack_fast(aioredis.BlockingConnectionPool.from_url(settings.redis_url, **connection_options(settings),
                                                               **kwargs))


#: commands up to this many bytes of arguments are packed by hiredis (larger ones are sent in pieces, uncopied)
FAST_PACK_BYTES = 64 << 10


def _pack_fast(pool: Any) -> Any:
    """Make ``pool``'s connections (plain, TLS or unix, as the URL chose) pack small commands with hiredis."""
    pool.connection_class = _fast_packing(pool.connection_class)
    return pool


@functools.cache
def _fast_packing(cls: type) -> type:
    """``cls`` whose ``pack_command`` lets hiredis pack commands of plain arguments.

    redis-py's asyncio connections pack every command in Python, re-joining a growing buffer per
    argument (~0.2 ms for a job's CREATE call of ~120 arguments; hiredis: ~0.02 ms). Arguments
    other than bytes, str and plain int (floats, whose text redis-py writes with repr; bools, which
    it refuses), a command name with a space in it, or more than FAST_PACK_BYTES go to redis-py's
    own packer.
    """
    if getattr(cls, "_packs_fast", False):
        return cls

    def pack_command(self: Any, *args: Any) -> list[bytes]:
        size = 0
        for arg in args:
            if isinstance(arg, (bytes, str)):  # str enums (rq's JobStatus) too: both write their text
                size += len(arg)
            elif type(arg) is not int:
                return cls.pack_command(self, *args)
        if not args or size > FAST_PACK_BYTES or (" " if type(args[0]) is str else b" ") in args[0]:
            return cls.pack_command(self, *args)
        return [hiredis.pack_command(args)]

    return type(f"FastPacking{cls.__name__}", (cls,), {"pack_command": pack_command, "_packs_fast": True})
