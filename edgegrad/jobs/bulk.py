"""Large values read from Redis with one copy each: a GET's reply read from the socket straight into
a buffer of its size.

The asyncio client copies a large reply five times on its way to Python (the transport's read, the
stream reader's buffer, the slice handed to the parser, hiredis's own buffer, its result; what that
cost is in docs/operations.md, "What limits a fleet"). Here the GETs are sent pipelined on a
connection of a blocking pool (redis-py does the connecting: TLS, AUTH, SELECT) and their replies
are read by hand with ``recv_into``; the server runs it in a thread.
"""

from __future__ import annotations

from typing import Any

import redis

from ..settings import Settings
from .connections import sync_redis

__all__ = ["BulkReader"]

_HEAD = 64  # bytes read at a time while looking for a reply's first line


class BulkReader:
    """``get(keys)``: the values of string keys (None where a key is missing), read as described above."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        self.redis = sync_redis(settings, **kwargs)

    def get(self, keys: list[str]) -> list[bytearray | None]:
        """The values of ``keys`` in order; None for a key that does not exist."""
        pool = self.redis.connection_pool
        conn = pool.get_connection()
        try:
            conn.send_packed_command(conn.pack_commands([("GET", key) for key in keys]))
            sock = conn._sock  # the replies are read here, not by the connection's parser
            if sock is None:
                raise redis.ConnectionError("bulk read: not connected")
            rest = bytearray()
            values = []
            for _ in keys:
                value, rest = _reply(sock, rest)
                values.append(value)
            if rest:
                raise redis.ConnectionError("bulk read: more bytes than the replies")
        except BaseException:
            conn.disconnect()  # whatever was left unread goes with the connection
            raise
        finally:
            pool.release(conn)
        return values

    def close(self) -> None:
        """Close the pool's connections."""
        self.redis.close()


def _reply(sock: Any, rest: bytearray) -> tuple[bytearray | None, bytearray]:
    """One bulk-string reply (or nil, RESP2's or RESP3's) and the bytes read past it."""
    while (end := rest.find(b"\r\n")) < 0:
        more = sock.recv(_HEAD)
        if not more:
            raise redis.ConnectionError("bulk read: connection closed")
        rest += more
        if len(rest) > 1024:
            raise redis.ConnectionError("bulk read: no reply line")
    line, rest = bytes(rest[:end]), rest[end + 2:]
    if line.startswith(b"-"):
        raise redis.ResponseError(line[1:].decode(errors="replace"))
    if line == b"_":  # RESP3's nil
        return None, rest
    if not line.startswith(b"$") or not line[1:].lstrip(b"-").isdigit():
        raise redis.ConnectionError(f"bulk read: unexpected reply {line[:40]!r}")
    size = int(line[1:])
    if size < 0:
        return None, rest
    value = bytearray(size + 2)  # the value and its CRLF
    have = min(len(rest), size + 2)
    value[:have] = rest[:have]
    rest = rest[have:]
    view = memoryview(value)
    while have < size + 2:
        got = sock.recv_into(view[have:])
        if not got:
            raise redis.ConnectionError("bulk read: connection closed")
        have += got
    view.release()
    if value[size:] != b"\r\n":
        raise redis.ConnectionError("bulk read: a value not ended by CRLF")
    del value[size:]
    return value, rest
