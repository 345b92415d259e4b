"""The health checks of docker-compose.yml, run for real against a real server (Docker is not needed)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

yaml = pytest.importorskip("yaml")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _compose() -> dict:
    with open(os.path.join(ROOT, "docker-compose.yml"), encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _run_check(service: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    test = _compose()["services"][service]["healthcheck"]["test"]
    assert test[0] == "CMD" and test[1] == "python"
    return subprocess.run([sys.executable, *test[2:]], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=60)


def test_server_health_check_passes_on_a_serving_server_and_fails_without_one(cluster) -> None:
    port = cluster.address.rsplit(":", 1)[1]
    ok = _run_check("server", {"EDGEGRAD_LISTEN": f"[::]:{port}"})
    assert ok.returncode == 0, ok.stderr
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    down = _run_check("server", {"EDGEGRAD_LISTEN": f"[::]:{free}"})
    assert down.returncode != 0


def test_worker_health_check_is_that_redis_answers(cluster) -> None:
    assert _run_check("worker", {"REDIS_URL": cluster.settings.redis_url}).returncode == 0
    assert _run_check("worker", {"REDIS_URL": "redis://127.0.0.1:1/0"}).returncode != 0
