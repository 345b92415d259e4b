"""Connections to Redis made from the settings: the URL (user, password, ``rediss://`` TLS) and the CA file."""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis

from ..settings import Settings
from .packing import async_packing_pool

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
    async_packing_pool(client.connection_pool)
    return client


def async_blocking_pool(settings: Settings, **kwargs: Any) -> aioredis.BlockingConnectionPool:
    """An asyncio pool whose callers wait for a free connection when all are busy."""
    pool = aioredis.BlockingConnectionPool.from_url(settings.redis_url, **connection_options(settings), **kwargs)
    return async_packing_pool(pool)
