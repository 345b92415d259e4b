"""The one packing policy (edgegrad.jobs.packing) on both connection kinds: the worker's sync client
(worker_redis) and the server's asyncio connections (async_redis, async_blocking_pool). No Redis: the
connections are made, never connected (the round trip through a live one is in tests/service/)."""

from __future__ import annotations

import enum
import os
import types
from collections.abc import Callable
from typing import Any

import hiredis
import pytest
import redis
import redis.asyncio.connection as aioconnection
from redis._parsers import Encoder
from redis.connection import PythonRespSerializer

from edgegrad.jobs import packing
from edgegrad.jobs.connections import async_blocking_pool, async_redis
from edgegrad.jobs.worker_store import worker_redis
from edgegrad.settings import Settings

KINDS = ["sync", "async", "async-blocking"]


def _settings() -> Settings:
    return Settings.from_env(redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))


def _packer(kind: str) -> Callable[..., list]:
    """``pack_command`` of a (not connected) connection of ``kind``, made by the public functions."""
    if kind == "sync":
        client: Any = worker_redis(_settings())
        return client.connection_pool.make_connection().pack_command
    if kind == "async":
        return async_redis(_settings()).connection_pool.make_connection().pack_command
    return async_blocking_pool(_settings()).make_connection().pack_command


def _redis_py(kind: str) -> Callable[..., list]:
    """redis-py's Python packer, as its own connections of ``kind`` set it up: what falls back to it
    must come out exactly so (redis-py 8.2's asyncio connections pack with hiredis first; the Python
    packer is the one that leaves large values uncopied)."""
    if kind == "sync":
        return PythonRespSerializer(6000, Encoder("utf-8", "strict", False).encode).pack
    connection = aioconnection.Connection()
    return getattr(connection, "_pack_command_python", connection.pack_command)


class _Status(str, enum.Enum):
    QUEUED = "queued"


@pytest.fixture
def hiredis_calls(monkeypatch) -> list:
    """The commands hiredis was asked to pack during the test."""
    calls: list = []

    def pack_command(args: tuple) -> bytes:
        calls.append(args)
        return hiredis.pack_command(args)

    monkeypatch.setattr(packing, "hiredis", types.SimpleNamespace(pack_command=pack_command))
    return calls


SMALL = [
    ("SET", "k", "v"),
    (b"HSET", b"h", "f", 1, "g", -5, "big", 2**70, "e", b""),
    ("SET", "k", _Status.QUEUED),
    ("SET", "clé", "värde ✓"),
    ("EVALSHA", "a" * 40, 8, *[f"eg:{{t}}:job:{i}" for i in range(8)], *[f"v{i}" for i in range(110)]),
    ("SET", "k", b"x" * (packing.FAST_PACK_BYTES - 4)),  # 64 KiB in all, just
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("args", SMALL, ids=range(len(SMALL)))
def test_small_commands_are_packed_by_hiredis_as_redis_py_packs_them(kind: str, args: tuple, hiredis_calls) -> None:
    out = _packer(kind)(*args)
    assert len(out) == 1 and hiredis_calls == [args]
    assert out[0] == b"".join(_redis_py(kind)(*args)) == b"".join(redis.connection.HiredisRespSerializer().pack(*args))


@pytest.mark.parametrize("kind", KINDS)
def test_a_large_value_goes_to_the_socket_uncopied(kind: str, hiredis_calls) -> None:
    value = os.urandom(4 << 20)
    view = memoryview(bytearray(value))
    for args in (("SET", "k", value), ("SET", "k", view, "PX", 1000), ("RPUSH", "k", *[b"v" * 4096] * 17)):
        out = _packer(kind)(*args)
        assert out == _redis_py(kind)(*args)
        assert all(any(part is arg for part in out) for arg in args if arg is value or arg is view)
    assert hiredis_calls == []  # the third: 17 small values, but over FAST_PACK_BYTES in all


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("args", [("SET", "k", 1.5), ("HSET", "h", "f", 0.1 + 0.2), ("SET", "k", memoryview(b"v")),
                                  ("CONFIG GET", "maxmemory"), (b"CONFIG GET", b"maxmemory"), ("SET", "k", bytearray(b"v"))],
                         ids=["float", "float2", "memoryview", "space", "space-bytes", "bytearray"])
def test_floats_views_and_a_spaced_name_fall_back_to_redis_py(kind: str, args: tuple, hiredis_calls) -> None:
    assert _packer(kind)(*args) == _redis_py(kind)(*args)
    assert hiredis_calls == []


@pytest.mark.parametrize("kind", KINDS)
def test_bools_are_refused_as_redis_py_refuses_them(kind: str, hiredis_calls) -> None:
    for args in (("SET", "k", True), ("SET", "k", [b"a", b"b"], "NX", False)):
        with pytest.raises(redis.DataError):
            _packer(kind)(*args)
    assert hiredis_calls == []


@pytest.mark.parametrize("kind", KINDS)
def test_a_list_of_buffers_is_one_bulk_string(kind: str, hiredis_calls) -> None:
    big = memoryview(os.urandom(100_000))
    pieces: list = [b"head", big, b"", bytearray(b"mid"), b"t" * (packing.FAST_PACK_BYTES + 1), b"tail"]
    whole = b"".join(pieces)
    args: tuple = ("SET", "k", pieces, "PX", 60000, 2.5)
    out = _packer(kind)(*args)
    assert b"".join(out) == b"".join(_redis_py(kind)("SET", "k", whole, "PX", 60000, 2.5))
    assert any(part is big for part in out) and any(part is pieces[4] for part in out)
    assert b"".join(_packer(kind)("SET", "k", [])) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"
    spaced = _packer(kind)("CLIENT SETNAME", [b"a", b"b"])
    assert b"".join(spaced) == b"".join(_redis_py(kind)("CLIENT SETNAME", b"ab"))
    assert hiredis_calls == []
