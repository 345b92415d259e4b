"""``edgegrad up`` as a real process: embedded Redis (no REDIS_URL), a real request, clean Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
import pytest
from svc_helpers import served

import edgegrad

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _start_up(tmp_path, *extra: str) -> tuple[subprocess.Popen, str, list[str], str]:
    """Run ``edgegrad up --port 0`` in ``tmp_path``: the process, its address, its stderr lines, its first line."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL" and not k.startswith("EDGEGRAD_")}
    env["EDGEGRAD_KEY_PREFIX"] = "edgegrad-up-test"
    proc = subprocess.Popen([sys.executable, "-m", "edgegrad", "up", "--port", "0", "--workers", "2", *extra],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    errors: list[str] = []
    threading.Thread(target=lambda: errors.extend(proc.stderr), daemon=True).start()
    lines: list[str] = []

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    end = time.monotonic() + 60
    while not lines:
        if proc.poll() is not None or time.monotonic() > end:
            proc.kill()
            pytest.fail(f"edgegrad up did not print its address (status {proc.poll()}): {''.join(errors)}")
        time.sleep(0.05)
    match = re.match(r"edgegrad listening on (\S+:\d+) ", lines[0])
    assert match, lines[0]
    return proc, match.group(1), errors, lines[0]


def _family(pid: int) -> list[psutil.Process]:
    """The process and every process it started, however deep (children run in their own sessions)."""
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def test_up_runs_everything_with_an_embedded_redis_and_stops_cleanly_on_ctrl_c(tmp_path) -> None:
    proc, address, errors, line = _start_up(tmp_path)
    family: list[psutil.Process] = []
    try:
        # the line names the Redis URL the parts use, and that URL answers
        url = re.search(r"redis (unix://\S+\?db=0), embedded, data in (\S+)\)", line)
        assert url and url.group(2) == str(tmp_path / ".edgegrad" / "redis"), line
        import redis
        with redis.Redis.from_url(url.group(1)) as r:
            assert r.ping()
        family = _family(proc.pid)
        names = " ".join(" ".join(p.cmdline()) for p in family)
        assert "redis-server" in names, "no REDIS_URL: up must start its own Redis"
        assert names.count("edgegrad worker") == 2 and "edgegrad server" in names

        net = edgegrad.Network.load(os.path.join(ROOT, "examples", "xor.json"))
        x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
        t = np.array([[0.0], [1.0], [1.0], [0.0]])
        with edgegrad.Client(address, timeout=60) as client:
            res = client.gradients(net, x, targets=t, loss="mse")
            for _ in range(3):
                client.gradients(net, x, shard_rows=1)  # 4 shards: no log line for any of them
        assert res == served(net, x, t, loss="mse")  # up's default settings
        time.sleep(0.5)  # a late log line would have reached the reader by now
        noisy = [e for e in errors if " INFO " in e or '"INFO"' in e]
        assert not noisy, "up stays quiet by default: " + "".join(errors)

        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, "".join(errors)
        gone, alive = psutil.wait_procs(family, timeout=10)
        assert not alive, f"left running after Ctrl-C: {[p.cmdline() for p in alive]}"
    finally:  # a failed test must not leave a service running
        for leftover in [*family[1:], psutil.Process(proc.pid)] if proc.poll() is None else family[1:]:
            try:
                leftover.kill()
            except psutil.NoSuchProcess:
                pass
    data = tmp_path / ".edgegrad" / "redis"
    # Redis 6 writes appendonly.aof, Redis 7 a folder of them
    assert (data / "appendonly.aof").exists() or (data / "appendonlydir").is_dir(), \
        "the embedded Redis keeps its data in the local folder"
    assert not (data / "redis.sock").exists() and not (data / "redis.pid").exists()


def test_up_refuses_bad_options_with_exit_2(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    out = subprocess.run([sys.executable, "-m", "edgegrad", "up", "--workers", "0"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith("error: --workers") and "Traceback" not in out.stderr
    assert not (tmp_path / ".edgegrad").exists(), "nothing is started for a bad command line"
