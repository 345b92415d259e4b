"""Ctrl-C, cancel and failure through the CLI, on a server whose jobs wait until a test starts a worker.

With no worker running, a job stays queued for as long as a test needs, so "Ctrl-C while the job
runs" is not a race against a fast job.
"""

from __future__ import annotations

import json
import re
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from cli_helpers import (
    NAME,
    XOR,
    XOR_PATH,
    assert_matches_in_process,
    edgegrad_cli,
    interrupt,
    load_result,
    start_cli,
    wait_for_stderr,
    xor_batch,
)

from edgegrad.cli.resultfiles import PROGRESS_NAME
from edgegrad.client import Client
from edgegrad.jobs.keys import Keys
from edgegrad.model.network import Network
from edgegrad.server.cluster import Cluster

SUBMITTED = re.compile(r"^submitted (jobs/\S+)")


@pytest.fixture
def idle(namespace) -> Iterator[Cluster]:
    """A real server with no workers (tests add one when they want jobs to run)."""
    with Cluster(namespace("cli-idle"), workers=0, log=sys.stderr) as c:
        yield c


def _state(client: Client, name: str) -> str:
    from edgegrad.jobs.contract import state_name

    return state_name(client.get_job(name).state)


def _wait_state(client: Client, name: str, want: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while _state(client, name) != want:
        assert time.monotonic() < deadline, f"{name} never became {want} ({_state(client, name)})"
        time.sleep(0.1)


def test_ctrl_c_on_batch_detaches_and_jobs_watch_finishes_the_file(idle, tmp_path):
    xp, tp, x, t = xor_batch(tmp_path, 5000, seed=3)
    out = tmp_path / "result.npz"
    server = ["--server", idle.address]
    proc = start_cli("batch", XOR_PATH, "--inputs", xp, "--targets", tp, "--loss", "mse", "--out", str(out), *server)
    name = wait_for_stderr(proc, SUBMITTED).group(1)
    status, stdout, stderr = interrupt(proc)
    assert status == 130 and stdout == "", stderr
    assert f"detached: {name} keeps running" in stderr
    assert f"edgegrad jobs watch {name} --out {out} --server {idle.address}" in stderr
    assert f"edgegrad jobs cancel {name} --server {idle.address}" in stderr
    assert not out.exists() and Path(f"{out}.part").is_dir()  # the partial result and its record
    shown = json.loads(edgegrad_cli("jobs", "show", name, "--json", *server).stdout)
    assert shown["state"] == "queued"  # the job was left alone

    follower = start_cli("jobs", "watch", name, *server)  # attached before the job runs: follows it to the end
    wait_for_stderr(follower, re.compile(rf"^watching {name} \(queued, 5,000 rows\)"))
    idle.add_worker()
    watched = edgegrad_cli("jobs", "watch", name, "--out", str(out), *server)
    assert watched.returncode == 0, watched.stderr
    assert watched.stdout == "" and "succeeded, 5,000 rows" in watched.stderr
    followed_out, followed_err = follower.communicate(timeout=60)
    assert follower.returncode == 0 and followed_out == "", followed_err
    assert f"{name}: succeeded, 5,000 rows in" in followed_err
    assert not Path(f"{out}.part").exists()
    # the labels batch wrote before the Ctrl-C are in the finished file too
    assert_matches_in_process(load_result(out), XOR, x, targets=t, loss="mse")


def test_ctrl_c_mid_stream_keeps_what_was_written_and_watch_continues_from_there(namespace, tmp_path):
    """Tiny chunks make the result stream for seconds; the CLI is frozen (SIGSTOP) once its record shows
    progress, so the Ctrl-C surely lands mid-stream."""
    xp, tp, x, t = xor_batch(tmp_path, 200_000, seed=7)
    out = tmp_path / "result.npz"
    record = Path(f"{out}.part") / PROGRESS_NAME
    with Cluster(namespace("cli-slow", chunk_bytes=1024), workers=1, log=sys.stderr) as slow:
        server = ["--server", slow.address]
        proc = start_cli("batch", XOR_PATH, "--inputs", xp, "--targets", tp, "--loss", "bce", "--per-example",
                         "--out", str(out), *server)
        name = wait_for_stderr(proc, SUBMITTED).group(1)
        deadline = time.monotonic() + 120
        while not (record.exists() and json.loads(record.read_text())["through"] > 0):
            assert proc.poll() is None and time.monotonic() < deadline, "no chunk was written"
            time.sleep(0.005)
        proc.send_signal(signal.SIGSTOP)
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGCONT)
        status, stdout, stderr = proc.wait(timeout=60), proc.stdout.read(), proc.stderr.read()
        assert status == 130 and stdout == "", stderr
        kept = json.loads(record.read_text())
        with Client(slow.address) as client:
            chunk_count = client.get_job(name).layout.chunk_count
        assert 0 < kept["through"] < chunk_count, (kept["through"], chunk_count)
        assert re.search(rf"detached: {name} keeps running; [\d,]+ of 200,000 rows written in {out}.part/ \({out}"
                         rf" is made from it once the job is complete\)", stderr), stderr

        watched = edgegrad_cli("jobs", "watch", name, "--out", str(out), *server)
        assert watched.returncode == 0, watched.stderr
        assert f"continuing {out} after {kept['through']} of {chunk_count} chunks" in watched.stderr
    assert_matches_in_process(load_result(out), XOR, x, targets=t, loss="bce", per_example=True)


def test_ctrl_c_on_grad_server_cancels_its_job(idle, tmp_path):
    xp, tp, x, t = xor_batch(tmp_path, 100, seed=4)
    with Client(idle.address) as client:
        before = {job.name for job in client.list_jobs()}
        proc = start_cli("grad", XOR_PATH, "--inputs", xp, "--server", idle.address)
        deadline = time.monotonic() + 60
        while not (new := {job.name for job in client.list_jobs()} - before):
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() else ""
            time.sleep(0.1)
        (name,) = new
        status, stdout, stderr = interrupt(proc)
        assert status == 130 and stdout == "", stderr
        assert stderr == f"interrupted: cancelled {name}\n"
        assert _state(client, name) == "cancelled"


def test_a_job_cancelled_while_watched_keeps_the_rows_written(namespace, tmp_path):
    """``jobs watch NAME --out DIR`` on a job cancelled meanwhile: exit 1, saying so, and the rows stay."""
    xp, tp, x, t = xor_batch(tmp_path, 200_000, seed=8)
    out = tmp_path / "rows"
    record = out / PROGRESS_NAME
    with Cluster(namespace("cli-cancel", chunk_bytes=1024, result_buffer_bytes=64 * 1024), workers=1,
                 log=sys.stderr) as slow:
        server = ["--server", slow.address]
        with Client(slow.address) as client:
            name = client.submit(XOR, x, targets=t, loss="bce", per_example=True).name
            proc = start_cli("jobs", "watch", name, "--out", str(out), *server)
            deadline = time.monotonic() + 120
            while not (record.exists() and json.loads(record.read_text())["through"] > 0):
                assert proc.poll() is None and time.monotonic() < deadline, "no chunk was written"
                time.sleep(0.005)
            proc.send_signal(signal.SIGSTOP)  # the watcher sleeps while its job is cancelled
            assert _state(client, name) == "running"
            client.cancel_job(name)
            proc.send_signal(signal.SIGCONT)
            status, stdout, stderr = proc.wait(timeout=60), proc.stdout.read(), proc.stderr.read()
    assert status == 1 and stdout == "", stderr
    kept = re.search(rf"^error: {name} was cancelled: cancelled by request; the ([\d,]+) of 200,000 rows written"
                     rf" are kept in {out}/$", stderr.splitlines()[-1])
    assert kept, stderr
    assert (out / "outputs.npy").exists() and json.loads(record.read_text())["through"] > 0
    assert int(kept.group(1).replace(",", "")) > 0


def test_watching_a_finished_job_reports_the_jobs_time_and_the_download_apart(namespace, tmp_path):
    xp, tp, x, t = xor_batch(tmp_path, 20_000, seed=9)
    with Cluster(namespace("cli-rewatch"), workers=1, log=sys.stderr) as c:
        with Client(c.address) as client:
            handle = client.submit(XOR, x, targets=t, loss="mse", per_example=True)
            job = handle.wait(timeout=120)
        watched = edgegrad_cli("jobs", "watch", handle.name, "--out", str(tmp_path / "r.npz"), "--server", c.address)
    assert watched.returncode == 0, watched.stderr
    seconds = (job.end_time.ToNanoseconds() - job.start_time.ToNanoseconds()) / 1e9
    line = watched.stderr.splitlines()[-1]
    assert line.startswith(f"{handle.name}: succeeded, 20,000 rows in ") and "; downloaded in " in line, line
    assert f"({20_000 / seconds:,.0f} rows/s)" in line, (line, seconds)  # the job's rate, not the download's


def test_jobs_cancel_then_watch_is_exit_1(idle, tmp_path):
    xp, tp, x, t = xor_batch(tmp_path, 100, seed=5)
    server = ["--server", idle.address]
    with Client(idle.address) as client:
        name = client.submit(XOR, x).name
    assert json.loads(edgegrad_cli("jobs", "list", "--state", "queued", "--json", *server).stdout)[0]["name"] == name
    cancelled = edgegrad_cli("jobs", "cancel", name, *server)
    assert cancelled.returncode == 0 and cancelled.stdout == f"{name}: cancelled\n", cancelled.stderr
    listed = json.loads(edgegrad_cli("jobs", "list", "--state", "cancelled", "--json", *server).stdout)
    assert [j["name"] for j in listed] == [name]
    for args in (["jobs", "watch", name], ["jobs", "watch", name, "--out", str(tmp_path / "r")]):
        watched = edgegrad_cli(*args, *server)
        assert watched.returncode == 1 and watched.stdout == "", watched.stderr
        assert watched.stderr.splitlines()[-1] == f"error: {name} was cancelled: cancelled by request"
    assert list(tmp_path.glob("r*")) == []  # nothing half-written is left behind


def test_a_job_that_fails_on_its_worker_is_exit_1(idle, tmp_path):
    """The network is deleted from Redis while the job waits, so the worker cannot run it."""
    xp, tp, x, t = xor_batch(tmp_path, 100, seed=6)
    net = Network.from_dict({**XOR.to_dict(), "nodes": [{**n, "bias": 0.5} if n["id"] == "xor" else n
                                                        for n in XOR.to_dict()["nodes"]]})
    path = tmp_path / "other.json"
    net.save(str(path))
    out = tmp_path / "r"
    proc = start_cli("batch", str(path), "--inputs", xp, "--out", str(out), "--server", idle.address)
    name = wait_for_stderr(proc, SUBMITTED).group(1)
    settings = idle.settings
    r = redis.Redis.from_url(settings.redis_url)
    keys = Keys(settings.key_prefix)
    assert r.delete(keys.network(net.content_hash)) == 1
    idle.add_worker()
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1 and stdout == "", stderr
    assert stderr.splitlines()[-1].startswith(f"error: {name} failed: network_hash: network"), stderr
    assert not out.exists()
    assert NAME.search(stderr).group(1) == name
