"""Prometheus metrics and job log lines of a real ``edgegrad up``: scrape /metrics after real jobs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import psutil
import pytest
from svc_helpers import served

import edgegrad
from edgegrad.errors import InvalidInput

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
XOR = edgegrad.Network.load(os.path.join(ROOT, "examples", "xor.json"))
X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
T = np.array([[0.0], [1.0], [1.0], [0.0]])
DEFAULT_TOKEN, ALICE_TOKEN = "token-of-default-0123", "token-of-alice-4567"
OVERFLOWS = edgegrad.Network.from_dict({  # finite inputs, an output beyond float64: the worker fails it
    "format": "edgegrad.network/v1", "inputs": ["a"], "outputs": ["y"],
    "nodes": [{"id": "y", "activation": "identity"}],
    "edges": [{"src": "a", "dst": "y", "weight": 1e300}]})


def scrape(url: str) -> dict[str, float]:
    """``name{labels}`` -> value of every edgegrad_ sample at ``url``."""
    with urllib.request.urlopen(url, timeout=10) as reply:
        text = reply.read().decode()
    samples = {}
    for line in text.splitlines():
        if line.startswith("edgegrad_"):
            key, value = line.rsplit(" ", 1)
            samples[key] = float(value)
    return samples


def total(scrapes: list[dict[str, float]], key: str) -> float:
    return sum(s.get(key, 0.0) for s in scrapes)


@pytest.fixture
def up(tmp_path):
    """``edgegrad up --log-level INFO`` (a line per job event) with metrics on free ports and JSON logs; (address,
    metrics URLs, stderr lines)."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL" and not k.startswith("EDGEGRAD_")}
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{DEFAULT_TOKEN}\nalice {ALICE_TOKEN}\n")
    env.update(EDGEGRAD_KEY_PREFIX="edgegrad-metrics-test", EDGEGRAD_METRICS_PORT="0", EDGEGRAD_LOG_FORMAT="json",
               EDGEGRAD_AUTH_TOKEN_FILE=str(tokens))
    proc = subprocess.Popen([sys.executable, "-m", "edgegrad", "up", "--port", "0", "--workers", "2",
                             "--log-level", "INFO"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    errors: list[str] = []
    lines: list[str] = []
    threading.Thread(target=lambda: errors.extend(proc.stderr), daemon=True).start()
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    family: list[psutil.Process] = []
    try:
        end = time.monotonic() + 60
        while len(lines) < 2:
            if proc.poll() is not None or time.monotonic() > end:
                pytest.fail(f"edgegrad up did not start (status {proc.poll()}): {lines} {''.join(errors)[-3000:]}")
            time.sleep(0.05)
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        address = re.match(r"edgegrad listening on (\S+:\d+) ", lines[0]).group(1)
        urls = re.findall(r"http://\S+/metrics", lines[1])
        assert lines[1].startswith("edgegrad metrics at ") and "(server)" in lines[1] and "(workers)" in lines[1]
        yield address, urls, errors
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, "".join(errors)
    finally:
        for p in family if proc.poll() is None else family[1:]:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass


def test_up_serves_metrics_of_its_server_and_each_worker_and_logs_every_job_event(up) -> None:
    address, urls, errors = up
    assert len(urls) == 3 and len(set(urls)) == 3  # the server, then one port per worker
    with edgegrad.Client(address, timeout=60, token=ALICE_TOKEN) as client:
        alices = client.submit(XOR, X)
        alices.result()
    with edgegrad.Client(address, timeout=60, token=DEFAULT_TOKEN) as client:
        for _ in range(3):
            assert client.gradients(XOR, X, targets=T, loss="mse") == served(XOR, X, T, loss="mse")  # up's settings
        sharded = client.submit(XOR, np.tile(X, (2, 1)), shard_rows=2)  # 4 shards, output mode
        sharded.result()
        with pytest.raises(InvalidInput, match="overflows"):  # found by the worker: the job fails
            client.gradients(OVERFLOWS, np.array([[1e300]]))
        long = client.submit(XOR, np.tile(X, (75, 1)), shard_rows=1)  # 300 shards: still going when cancelled
        long.cancel()

    deadline = time.monotonic() + 30
    while True:  # the workers skip the cancelled job's shards; the client's streams close
        server, *workers = [scrape(u) for u in urls]
        if server.get("edgegrad_open_streams") == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert server['edgegrad_jobs_submitted_total{tenant="default"}'] == 6
    assert server['edgegrad_jobs_submitted_total{tenant="alice"}'] == 1
    assert server["edgegrad_shards_enqueued_total"] == 1 + 3 + 4 + 1 + 300
    assert server['edgegrad_jobs_finished_total{state="cancelled",tenant="default"}'] == 1
    assert server["edgegrad_open_streams"] == 0
    assert server["edgegrad_result_bytes_streamed_total"] >= 3 * 136 + 8 * 8 * 6  # the results the client read
    assert total(workers, 'edgegrad_jobs_finished_total{state="succeeded",tenant="default"}') == 4
    assert total(workers, 'edgegrad_jobs_finished_total{state="succeeded",tenant="alice"}') == 1
    assert total(workers, 'edgegrad_jobs_finished_total{state="failed",tenant="default"}') == 1
    assert total(workers, 'edgegrad_job_duration_seconds_count{state="succeeded"}') == 5
    assert total(workers, 'edgegrad_shards_total{outcome="done"}') >= 1 + 3 + 4
    assert total(workers, 'edgegrad_shards_total{outcome="failed"}') == 1
    assert total(workers, "edgegrad_queue_wait_seconds_count") >= 1 + 3 + 4 + 1
    assert total(workers, "edgegrad_shard_run_seconds_count") == total(workers, 'edgegrad_shards_total{outcome="done"}')
    assert total(workers, "edgegrad_rows_total") >= 4 + 3 * 4 + 8
    # a plan for each shard of the sharded job (the small jobs run together on the population engine: no plan)
    assert total(workers, "edgegrad_plan_cache_hits_total") + total(workers, "edgegrad_plan_cache_misses_total") >= 4
    assert total(workers, "edgegrad_plan_cache_hits_total") >= 1  # the same network again: its plan is reused
    assert all(w["edgegrad_rows_total"] > 0 for w in workers)  # both workers took shards

    events = [json.loads(line) for line in errors if line.startswith("{") and '"edgegrad.jobs"' in line]
    by_job: dict[str, list[dict]] = {}
    for event in events:
        assert event["job"].startswith("jobs/") and event["process"] in ("server", "worker")
        by_job.setdefault(event["job"], []).append(event)
    assert len(by_job) == 7
    assert {e["tenant"] for e in by_job.pop(alices.name)} == {"alice"}
    assert {e["tenant"] for job in by_job.values() for e in job} == {"default"}
    sharded_events = [e["event"] for e in by_job[sharded.name]]
    assert sharded_events.count("submitted") == 1 and sharded_events.count("started") == 4
    assert sharded_events.count("shard_done") == 4 and sharded_events[-1] == "finished"
    done = by_job[sharded.name][-1]
    assert done["rows"] == 8 and done["bytes"] > 0 and done["duration_s"] >= 0 and done["state"] == "succeeded"
    failed = [e for e in events if e["event"] == "failed"]
    assert len(failed) == 1 and "overflows float64" in failed[0]["reason"]
    cancelled = [e for e in events if e["event"] == "cancelled"]
    assert len(cancelled) == 1 and cancelled[0]["job"] == long.name


def test_a_metrics_port_taken_is_exit_2_with_a_clear_message(tmp_path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEGRAD_")}
        env.update(EDGEGRAD_METRICS_PORT=str(port), EDGEGRAD_METRICS_HOST="127.0.0.1",
                   REDIS_URL="redis://127.0.0.1:1/0")
        proc = subprocess.run([sys.executable, "-m", "edgegrad", "server", "--listen", "127.0.0.1:0"], env=env,
                              capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: EDGEGRAD_METRICS_PORT: cannot listen on 127.0.0.1:{port}"), proc.stderr
    for bad, message in (("x", "expected a port"), ("70000", "expected a port")):
        env["EDGEGRAD_METRICS_PORT"] = bad
        proc = subprocess.run([sys.executable, "-m", "edgegrad", "server"], env=env, capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    env["EDGEGRAD_METRICS_PORT"], env["EDGEGRAD_LOG_FORMAT"] = "", "yaml"
    proc = subprocess.run([sys.executable, "-m", "edgegrad", "server"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "EDGEGRAD_LOG_FORMAT: expected text or json" in proc.stderr, proc.stderr
