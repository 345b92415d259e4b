"""Fixtures for service tests: the session's Redis, an isolated Redis namespace, real servers and real
worker processes. Nothing here contacts Redis at import: this file is loaded even when ``-m "not
service"`` deselects every test below it, and the Redis is arranged when the first service test runs."""

from __future__ import annotations

import asyncio
import secrets
import sys
import threading
from collections.abc import Iterator

import grpc
import pytest
import redis
from session_redis import SessionRedis

from edgegrad.jobs.keys import Keys
from edgegrad.jobs.namespace import delete_namespace, rq_job_keys
from edgegrad.server.app import App, create_server
from edgegrad.server.cluster import Cluster
from edgegrad.settings import Settings
from edgegrad.v1 import service_pb2_grpc

_SESSION_REDIS = SessionRedis()
#: every namespace of this session starts with it: what the session leaves in a shared Redis has one pattern
SESSION = f"egtest-{secrets.token_hex(3)}"


def _namespace(redis_url: str, tag: str, **overrides) -> Settings:
    token = f"{SESSION}-{tag}-{secrets.token_hex(4)}"
    base = dict(redis_url=redis_url, key_prefix=token, queue=token, job_heartbeat_ttl=2, maintenance_interval=1,
                worker_ttl=16, heartbeat_seconds=0.5, result_ttl=300, job_ttl=600, shutdown_grace_seconds=1.0,
                chunk_bytes=64 * 1024, auth_token="", auth_token_file="", tls_cert="", tls_key="")
    base.update(overrides)
    return Settings.from_env(**base)


def _redis_or_skip(redis_url: str) -> None:
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:  # pragma: no cover - CI starts one
        pytest.skip(f"no Redis at {redis_url}: {exc}")


@pytest.fixture(scope="session", autouse=True)
def redis_url() -> Iterator[str]:
    """The session's Redis (``REDIS_URL`` points at it), arranged when the first service test runs."""
    try:
        yield _SESSION_REDIS.start()
    finally:
        _SESSION_REDIS.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which Redis the service tests used, where any ran."""
    if _SESSION_REDIS.description:
        terminalreporter.write_line(f"redis: {_SESSION_REDIS.description}")


@pytest.fixture(scope="session")
def namespace(redis_url: str):
    """Factory of isolated namespaces (key prefix + queue), all deleted at the end of the session."""
    _redis_or_skip(redis_url)
    made: list[Settings] = []

    def make(tag: str, **overrides) -> Settings:
        s = _namespace(redis_url, tag, **overrides)
        made.append(s)
        return s

    yield make
    r = redis.Redis.from_url(redis_url)
    try:
        job_ids = [m.decode() for s in made for m in r.zrange(Keys(s.key_prefix).jobs, 0, -1)]
        for s in made:
            delete_namespace(s)
        left = session_keys(r) + [k.decode() for k in rq_job_keys(r, job_ids)]
    finally:
        r.close()
    assert not left, f"the session left {len(left)} keys in Redis, e.g. {left[:5]}"


def session_keys(r: redis.Redis) -> list[str]:
    """Keys of this session's namespaces: edgegrad's under their prefixes and rq's named after their queues."""
    return [k.decode() for pattern in (f"{SESSION}-*", f"rq:*{SESSION}-*") for k in r.scan_iter(match=pattern, count=1000)]


@pytest.fixture(scope="session")
def cluster(namespace) -> Iterator[Cluster]:
    """A real server process and two real worker processes."""
    with Cluster(namespace("cluster"), workers=2, log=sys.stderr) as c:
        yield c


@pytest.fixture(scope="session")
def stub(cluster) -> Iterator[service_pb2_grpc.EdgegradStub]:
    """A stub on the cluster's server."""
    with grpc.insecure_channel(cluster.address) as channel:
        yield service_pb2_grpc.EdgegradStub(channel)


class ThreadServer:
    """An in-process grpc.aio server running on its own event loop thread."""

    def __init__(self, settings: Settings, **kwargs) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.app: App = self.call(self._start(settings, kwargs))
        self.address = f"127.0.0.1:{self.app.port}"

    async def _start(self, settings: Settings, kwargs) -> App:
        app = create_server(settings, "127.0.0.1:0", **kwargs)
        await app.start()
        return app

    def call(self, coro, timeout: float = 30.0):
        """Run a coroutine on the server's loop and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        """Graceful stop, then end the loop."""
        if self.loop.is_running():
            self.call(self.app.stop())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


@pytest.fixture
def thread_server():
    """Factory of in-process servers (no workers) stopped after the test."""
    made: list[ThreadServer] = []

    def make(settings: Settings, **kwargs) -> ThreadServer:
        server = ThreadServer(settings, **kwargs)
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()
