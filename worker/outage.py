"""Riding out a Redis outage in a worker: one warning when it starts, one line when it ends, backoff between."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis

from edgegrad.errors import bounded

__all__ = ["REDIS_DOWN", "Outage"]

#: Redis being unreachable: waited out, never a reason to drop a job or stop a worker
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)

#: rq's own message for each failed reconnect (logged every try); replaced by the outage's one warning
_RQ_RETRY_MESSAGE = "could not connect to Redis"


class Outage:
    """Tracks whether Redis is unreachable; ``wait`` blocks with exponential backoff until it answers again."""

    def __init__(self, connection: redis.Redis, log: logging.Logger, first: float = 0.5, most: float = 10.0) -> None:
        self.connection = connection
        self.log = log
        self.first, self.most = first, most
        self.since: float | None = None  #: monotonic time the outage was noticed; None while Redis answers

    def noticed(self, exc: BaseException | str) -> None:
        """Redis failed a call: say so once per outage."""
        if self.since is None:
            self.since = time.monotonic()
            self.log.warning("redis unreachable (%s); waiting for it (retrying with backoff up to %.0f s)",
                             bounded(str(exc)), self.most)

    def recovered(self) -> bool:
        """Redis answered: end the outage (one line) if there was one; True if there was."""
        if self.since is None:
            return False
        self.log.warning("redis reachable again after %.1f s; carrying on", time.monotonic() - self.since)
        self.since = None
        return True

    def wait(self, exc: BaseException, stop: Callable[[], bool] = lambda: False) -> bool:
        """Block until Redis answers a PING (True) or ``stop()`` says to give up (False)."""
        self.noticed(exc)
        delay = self.first
        while not stop():
            time.sleep(delay)
            try:
                self.connection.ping()
            except REDIS_DOWN:
                delay = min(self.most, delay * 2)
                continue
            self.recovered()
            return True
        return False

    def quiet_filter(self) -> logging.Filter:
        """A filter for rq's logger that turns its per-retry connection errors into this outage's one warning."""
        outage = self

        class _Quiet(logging.Filter):
            def filter(self, record: logging.LogRecord) -> bool:
                if _RQ_RETRY_MESSAGE in str(record.msg):
                    args = record.args
                    outage.noticed(str(args[1]) if isinstance(args, tuple) and len(args) > 1 else record.getMessage())
                    return False
                return True

        return _Quiet()
