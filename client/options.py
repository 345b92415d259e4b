"""Connection settings shared by the sync and async clients: channel, TLS, token, deadlines, backoff."""

from __future__ import annotations

import math
import numbers
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc

from edgegrad.errors import InvalidInput

__all__ = ["ConnectOptions", "Backoff", "Deadline", "DEFAULT_MAX_MESSAGE_BYTES"]

#: the largest message the client sends or accepts; the server states its own limits in GetCapabilities
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024


def _read_bytes(value: bytes | str | os.PathLike[str] | None) -> bytes | None:
    """PEM bytes given directly or read from a file path."""
    if value is None or isinstance(value, bytes):
        return value
    with open(value, "rb") as handle:
        return handle.read()


@dataclass(frozen=True)
class ConnectOptions:
    """Where and how to connect: target, TLS root certificates, bearer token, message limits."""

    target: str
    root_certificates: bytes | None = None
    tls: bool = False
    token: str | None = None
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES

    @classmethod
    def build(cls, target: str, *, tls: bool | None = None,
              root_certificates: bytes | str | os.PathLike[str] | None = None,
              token: str | None = None, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> ConnectOptions:
        """Normalise user arguments; ``EDGEGRAD_TOKEN`` supplies the token when none is given."""
        if not isinstance(target, str) or not target.strip():
            raise InvalidInput("target: expected HOST:PORT, got an empty string")
        target = target.strip()
        for scheme in ("grpc://", "http://"):
            if target.startswith(scheme):
                target = target[len(scheme):]
        for scheme in ("grpcs://", "https://"):
            if target.startswith(scheme):
                target, tls = target[len(scheme):], True if tls is None else tls
        certs = _read_bytes(root_certificates)
        if token is None:
            token = os.environ.get("EDGEGRAD_TOKEN") or None
        return cls(target=target, root_certificates=certs, tls=bool(tls) or certs is not None,
                   token=token, max_message_bytes=max_message_bytes)

    def channel_options(self) -> list[tuple[str, int]]:
        """gRPC channel arguments: message limits and keepalive so dead connections are noticed."""
        return [
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.enable_retries", 0),  # the client retries itself, with request ids
            # reconnect quickly after a server restart (gRPC's own default starts at 1 s)
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 2_000),
        ]

    def credentials(self) -> grpc.ChannelCredentials | None:
        """TLS credentials, or None for a plaintext channel."""
        if not self.tls:
            return None
        return grpc.ssl_channel_credentials(root_certificates=self.root_certificates)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """Per-call metadata: the bearer token when there is one (works with and without TLS)."""
        if self.token:
            return (("authorization", f"Bearer {self.token}"),)
        return ()


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter between retries of a call that met UNAVAILABLE.

    With a deadline, retries go on until it passes (a server restart of a few seconds is ridden
    out); without one, they stop after ``give_up_after`` seconds of pauses. ``attempts`` caps the
    number of tries instead, when set.
    """

    initial: float = 0.05
    maximum: float = 2.0
    multiplier: float = 2.0
    attempts: int | None = None  #: tries in all, the first included (None: see above)
    give_up_after: float = 30.0

    def delays(self, deadline: Deadline | None = None) -> Iterator[float]:
        """The pauses before the 2nd, 3rd, ... tries."""
        bounded_by_deadline = deadline is not None and deadline.timeout is not None
        ceiling, waited, pauses = self.initial, 0.0, 0
        while True:
            if self.attempts is not None:
                if pauses >= self.attempts - 1:
                    return
            elif not bounded_by_deadline and waited >= self.give_up_after:
                return
            delay = random.uniform(ceiling / 2, ceiling)
            yield delay
            waited, pauses = waited + delay, pauses + 1
            ceiling = min(ceiling * self.multiplier, self.maximum)


class Deadline:
    """An absolute point in time (monotonic) that a whole operation, retries included, must meet."""

    def __init__(self, timeout: float | None) -> None:
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, numbers.Real)
                                    or not math.isfinite(timeout) or timeout < 0):
            raise InvalidInput(f"timeout: expected a finite number of seconds (0 or more), or None; got {timeout!r}")
        self.timeout = timeout
        self._end = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> float | None:
        """Seconds left (never below a tiny positive value), or None without a deadline."""
        if self._end is None:
            return None
        return max(self._end - time.monotonic(), 0.001)

    def expired(self) -> bool:
        """Whether the deadline has passed."""
        return self._end is not None and time.monotonic() >= self._end

    def clip(self, delay: float) -> float:
        """A pause shortened so that it ends by the deadline."""
        left = self.remaining()
        return delay if left is None else min(delay, left)
