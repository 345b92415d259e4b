"""How edgegrad's Redis connections pack commands: one policy for the worker's sync client and the
server's asyncio connections (measurements behind it: docs/operations.md, "How commands are packed").

The rules (``packed``): hiredis packs a command when every argument is bytes, str (str enums too) or
a plain int and they add up to at most FAST_PACK_BYTES (a str counted in characters) and the command
name has no space in it. hiredis copies every argument into one buffer, which past about 64 KiB costs
more than the bytes it moves. Anything else (floats, whose text redis-py writes with repr; bools, which
it refuses; memoryviews and bytearrays; a name like "CONFIG GET", which redis-py splits) goes to
redis-py's Python packer (``PythonRespSerializer``), which sends a large value to the socket as it is,
uncopied, on both connection kinds (redis-py's own asyncio connections prefer hiredis, a copy, since
redis-py 8.2). A command with an argument given as a list of buffers is framed here, that argument as
one bulk string of its buffers one after another (a result chunk staged from its pieces,
``wire.chunking.chunk_parts``).

The adapters: ``SyncPacker``, a ``command_packer`` for a sync ``redis.Redis``, and
``async_packing_pool``, which gives an asyncio pool's connections a ``pack_command`` of these rules.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import hiredis
from redis._parsers import Encoder
from redis.connection import PythonRespSerializer

__all__ = ["FAST_PACK_BYTES", "packed", "SyncPacker", "async_packing_pool"]

#: commands of at most this many bytes of arguments are packed by hiredis (see the module's text)
FAST_PACK_BYTES = 64 << 10
#: the cutoff redis-py's own connections give its Python packer (values longer go to the socket as they are)
_REDIS_PY_CUTOFF = 6000


def packed(args: Sequence[Any], encoder: Encoder) -> list | None:
    """``args`` packed by the rules above: by hiredis, or framed here for a list of buffers; None
    where redis-py's own packer should pack them (``encoder`` encodes the arguments framed here)."""
    size, plain = 0, True
    for arg in args:
        if isinstance(arg, (bytes, str)):
            size += len(arg)
        elif isinstance(arg, list):
            return _frame(args, encoder)
        elif type(arg) is not int:
            plain = False
    if not plain or not args or size > FAST_PACK_BYTES:
        return None
    name = args[0]
    if isinstance(name, str):
        if " " in name:
            return None
    elif not isinstance(name, bytes) or b" " in name:
        return None
    return [hiredis.pack_command(tuple(args))]


def _frame(args: Sequence[Any], encoder: Encoder) -> list:
    """One RESP command of ``args``, a list among them one bulk string of its buffers in order.

    Memoryviews and buffers over FAST_PACK_BYTES go out as they are; the rest is joined into
    pieces of about FAST_PACK_BYTES at most.
    """
    name = args[0]
    if isinstance(name, (bytes, str)):  # "CONFIG GET": separate words, as redis-py sends them
        args = (*(name.encode() if isinstance(name, str) else name).split(), *args[1:])
    out: list = []
    pending: list = [b"*%d\r\n" % len(args)]
    held = 0
    for arg in args:
        parts = arg if isinstance(arg, list) else [encoder.encode(arg)]
        sizes = [p.nbytes if isinstance(p, memoryview) else len(p) for p in parts]
        pending.append(b"$%d\r\n" % sum(sizes))
        for part, size in zip(parts, sizes):
            if isinstance(part, memoryview) or size > FAST_PACK_BYTES:
                out += [b"".join(pending), part]
                pending, held = [], 0
            else:
                pending.append(part)
                held += size
                if held > FAST_PACK_BYTES:
                    out.append(b"".join(pending))
                    pending, held = [], 0
        pending.append(b"\r\n")
    out.append(b"".join(pending))
    return out


class SyncPacker:
    """A sync client's ``command_packer`` (``redis.Redis(command_packer=SyncPacker())``) of these rules."""

    def __init__(self, encoder: Encoder | None = None) -> None:
        self._encoder = encoder or Encoder("utf-8", "strict", False)
        self._python = PythonRespSerializer(_REDIS_PY_CUTOFF, self._encoder.encode)

    def pack(self, *args: Any) -> list:
        """The command ``args`` packed for the socket: a list of buffers sent one after another."""
        out = packed(args, self._encoder)
        return out if out is not None else self._python.pack(*args)


def async_packing_pool(pool: Any) -> Any:
    """``pool`` (an asyncio connection pool), its connections (plain, TLS or unix, as the URL chose)
    packing by these rules."""
    pool.connection_class = _async_packing(pool.connection_class)
    return pool


@functools.cache
def _async_packing(cls: type) -> type:
    """``cls`` (an asyncio connection class) whose ``pack_command`` follows these rules."""
    if getattr(cls, "_edgegrad_packing", False):
        return cls

    def pack_command(self: Any, *args: Any) -> list:
        packer = self.__dict__.get("_edgegrad_packer")
        if packer is None:
            packer = self._edgegrad_packer = SyncPacker(self.encoder)
        return packer.pack(*args)

    return type(f"FastPacking{cls.__name__}", (cls,), {"pack_command": pack_command, "_edgegrad_packing": True})
