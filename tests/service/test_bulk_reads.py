"""The server's one-copy reader of large chunk values (edgegrad.jobs.bulk) against a real Redis."""

from __future__ import annotations

import os

import pytest
import redis

from edgegrad.jobs.bulk import BulkReader

pytestmark = pytest.mark.service


@pytest.mark.parametrize("protocol", [2, 3])
def test_values_of_any_size_and_missing_keys_read_back_exactly(namespace, protocol: int) -> None:
    settings = namespace("bulk")
    r = redis.Redis.from_url(settings.redis_url)
    reader = BulkReader(settings, protocol=protocol)
    sizes = [0, 1, 2, 63, 64, 65, 1000, 64 * 1024 + 3, 3 * 2**20 + 7]
    keys = [f"{settings.key_prefix}:v:{n}" for n in sizes]
    values = [os.urandom(n) for n in sizes]
    values[3] = b"\r\n" * 31 + b"$"  # a value that looks like the protocol
    try:
        for key, value in zip(keys, values):
            r.set(key, value)
        missing = f"{settings.key_prefix}:none"
        for _ in range(3):  # the connection goes back to the pool in step, and is used again
            got = reader.get([keys[0], missing, *keys[1:], missing])
            assert got[1] is None and got[-1] is None
            assert [bytes(v) for v in [got[0], *got[2:-1]]] == values
        assert reader.get([missing]) == [None]
    finally:
        r.delete(*keys)
        reader.close()
        r.close()


def test_an_error_reply_is_raised_and_the_connection_is_not_reused(namespace) -> None:
    settings = namespace("bulkerr")
    r = redis.Redis.from_url(settings.redis_url)
    reader = BulkReader(settings)
    key, other, third = (f"{settings.key_prefix}:{name}" for name in ("list", "str", "third"))
    try:
        r.rpush(key, b"x")
        r.set(other, b"y" * 100_000)
        r.set(third, b"z" * 10)
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            reader.get([key, other])   # the second reply is never read: its connection is dropped
        assert [bytes(v) for v in reader.get([third])] == [b"z" * 10]  # not the unread reply
    finally:
        r.delete(key, other, third)
        reader.close()
        r.close()
