"""How edgegrad's Redis connections pack commands: one policy for the worker's sync client and the
server's asyncio connections.

redis-py packs a command in Python, at about 1.3 us per argument (a job's CREATE call of ~120
arguments: ~0.1-0.2 ms); hiredis packs it in C (~0.02-0.03 ms) but copies every argument into one
buffer, a copy that past about 128 KiB costs far more than the bytes it moves. Measured here (CPython
3.11, redis-py 8.1, hiredis 3.5, best of 5, two busy cores; hiredis vs redis-py's sync packer):

    CREATE, 120 arguments, a 1 KB / 10 KB / 100 KB spec      23 / 29 / 35 us   vs 116 / 187 / 177 us
    120 arguments of 1 KB (120 KB)                           47 us             vs 159 us
    SET of 8 KB / 32 KB / 64 KB                              1.7 / 4.8 / 7.6 us vs 4.4 / 4.6 / 4.8 us
    SET of 256 KB / 4 MiB                                    537 us / 14.8 ms  vs 4.3 / 4.5 us
    EMIT-like, 800 chunks of 5 KB (4 MiB, each under 6000 B) 15.6 ms           vs 3.1 ms
    240 KB in 120 arguments of 2 KB                          552 us            vs 88 us

(one run each; a second moved the numbers by up to 2x, never their order). So the cutoff is on a
command's total size, FAST_PACK_BYTES = 64 KiB, about where a single value stops paying for its
copy (packed and sent on a socket, 64 KB: 33 us vs 32 us). 6000 B per argument (the worker's
earlier rule) sends a CREATE with a 10 KB spec to the slow packer and would let hiredis copy
megabytes of small chunks (an EMIT of a small network's results). Only between 64 KiB and ~200 KiB
of small arguments would hiredis still have won (120 x 1 KB above).

The rules (``packed``): hiredis packs a command when every argument is bytes, str (str enums too) or
a plain int and they add up to at most FAST_PACK_BYTES (a str counted in characters) and the command
name has no space in it. Anything else (floats, whose text redis-py writes with repr; bools, which
it refuses; memoryviews and bytearrays; a name like "CONFIG GET", which redis-py splits) goes to
redis-py's own Python packer, which sends a large value to the socket as it is, uncopied. A command
with an argument given as a list of buffers is framed here, that argument as one bulk string of its
buffers one after another (a result chunk staged from its pieces, ``wire.chunking.chunk_parts``).

The adapters: ``SyncPacker``, a ``command_packer`` for a sync ``redis.Redis``, and
``async_packing_pool``, which gives an asyncio pool's connections a ``pack_command`` of these rules.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

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

    def __init__(self) -> None:
        self._encoder = Encoder("utf-8", "strict", False)
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
        out = packed(args, self.encoder)
        return out if out is not None else cls.pack_command(self, *args)

    return type(f"FastPacking{cls.__name__}", (cls,), {"pack_command": pack_command, "_edgegrad_packing": True})
