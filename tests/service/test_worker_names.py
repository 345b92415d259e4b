"""Worker names are new for every process start, and a killed worker's registration never blocks
the next one (a container restarted after a crash has the same host name and pid 1 again)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest
import redis
from svc_helpers import example_network

import edgegrad
from edgegrad.server.cluster import settings_env
from edgegrad.worker.naming import default_name

NET = example_network(seed=11)
X = np.random.default_rng(11).normal(size=(6, NET.n_inputs))


def _registered(settings) -> set[bytes]:
    """rq worker keys registered on the namespace's queue."""
    r = redis.Redis.from_url(settings.redis_url)
    try:
        return r.smembers(f"rq:workers:{settings.queue}")
    finally:
        r.close()


def _wait_registered(settings, count: int, procs: list[subprocess.Popen], timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while len(_registered(settings)) < count:
        for proc in procs:
            assert proc.poll() is None, f"a worker exited with {proc.returncode}: {proc.stderr.read()}"
        assert time.monotonic() < end, f"{count} workers never registered"
        time.sleep(0.05)


def _worker(settings, prefix: list[str] = (), name: str | None = None) -> subprocess.Popen:
    """A real worker process (in whatever namespace ``prefix`` puts it)."""
    env = {**os.environ, **settings_env(settings), "EDGEGRAD_THREADS": "1"}
    cmd = [sys.executable, "-m", "edgegrad", "worker", "--log-level", "WARNING"] + (["--name", name] if name else [])
    return subprocess.Popen([*prefix, *cmd], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _serves_a_job(address: str) -> None:
    with edgegrad.Client(address, timeout=60) as client:
        got = client.gradients(NET, X)
    want = edgegrad.gradients(NET, X)
    np.testing.assert_allclose(got.edge_grads, want.edge_grads, rtol=1e-12, atol=0)


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _can_unshare() -> str | None:
    """Why a new pid + UTS namespace cannot be made here, or None."""
    if not shutil.which("unshare") or not shutil.which("hostname"):
        return "no unshare/hostname binaries"
    probe = subprocess.run(["unshare", "--pid", "--fork", "--uts", "sh", "-c", "hostname probe && test $$ = 1"],
                           capture_output=True, text=True)
    return None if probe.returncode == 0 else f"unshare --pid --uts failed: {probe.stderr.strip()}"


def test_default_names_differ_per_process_start() -> None:
    import socket

    first, second = default_name(), default_name()
    assert first != second
    assert first.startswith(f"{socket.gethostname()}.{os.getpid()}.")


def test_a_worker_restarted_at_once_as_pid_1_on_the_same_host_name_starts_and_serves(
        namespace, thread_server) -> None:
    why = _can_unshare()
    if why:
        pytest.skip(why)
    settings = namespace("names")
    server = thread_server(settings)
    host = settings.queue  # the host name (so delete_namespace finds the rq worker keys)
    # as in a container: own pid namespace (the worker is pid 1) and the same host name every start
    prefix = ["unshare", "--pid", "--fork", "--uts", "--kill-child", "sh", "-c", f'hostname {host} && exec "$0" "$@"']
    first = _worker(settings, prefix)
    procs = [first]
    try:
        _wait_registered(settings, 1, procs)
        (key,) = _registered(settings)
        assert key.decode().startswith(f"rq:worker:{host}.1."), key  # pid 1 on the chosen host name
        inner = psutil.Process(first.pid).children()[0]
        inner.send_signal(signal.SIGKILL)  # a crash: no death registered, the key stays
        first.wait(10)
        second = _worker(settings, prefix)  # at once, as `docker start` or a restart policy would
        procs.append(second)
        _wait_registered(settings, 2, [second])  # the dead one's key and the new one's
        _serves_a_job(server.address)
        time.sleep(0.5)
        assert second.poll() is None, second.stderr.read()
    finally:
        _stop(procs)


def test_a_killed_workers_name_is_free_again_at_once_but_a_live_one_is_not(namespace, thread_server) -> None:
    settings = namespace("names")
    server = thread_server(settings)
    name = f"{settings.queue}.fixed"
    first = _worker(settings, name=name)
    procs = [first]
    try:
        _wait_registered(settings, 1, procs)
        twin = _worker(settings, name=name)  # same name while the first is alive: refused, clearly
        assert twin.wait(30) == 2
        message = twin.stderr.read()
        assert f"a live worker named '{name}' is registered" in message, message
        assert first.poll() is None

        first.kill()
        first.wait(10)
        second = _worker(settings, name=name)  # at once: the registration left behind is a dead one
        procs.append(second)
        _serves_a_job(server.address)
        assert second.poll() is None, second.stderr.read()
        assert _registered(settings) == {f"rq:worker:{name}".encode()}
    finally:
        _stop(procs)
