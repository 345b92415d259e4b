"""``Client.submit`` returning before the server's answer: a loop's submissions share calls, each keeps its job."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np
import pytest
from redis_process import RedisProcess
from svc_helpers import CountCalls, example_network, served

from edgegrad import errors
from edgegrad.client import Client, submitter
from edgegrad.client.deferral import QUOTA_ROOM, may_defer
from edgegrad.client.protocol import prepare
from edgegrad.server.service import Service
from edgegrad.settings import Settings
from edgegrad.v1 import job_pb2
from edgegrad.wire.chunking import result_bytes, result_layout

NET = example_network(seed=2077)
X1 = np.random.default_rng(1).normal(size=(1, NET.n_inputs))
SUBMITS = ("SubmitJobs", "Compute", "SubmitJob")


def _caps(**overrides: Any):
    return Service(Settings().with_(**overrides), None).capabilities()  # type: ignore[arg-type]


def _tiny_size() -> int:
    return result_bytes(result_layout(NET, 1, None, False, "float64", Settings().chunk_bytes))


def test_which_submissions_may_be_sent_later() -> None:
    tiny = prepare(NET, X1, None, None, "mean", False, "float64", request_id=None)
    assert may_defer(tiny, NET, _caps())
    assert not may_defer(prepare(NET, X1, None, None, "mean", False, "float64", request_id=None, shard_rows=1),
                         NET, _caps())  # explicit shards may be refused
    big_x = np.zeros((100_000, NET.n_inputs))
    assert not may_defer(prepare(NET, big_x, None, None, "mean", False, "float64", request_id=None), NET, _caps())
    assert not may_defer(tiny, NET, _caps(tenant_max_jobs=10))  # a quota a loop may reach: wait for the answer
    assert may_defer(tiny, NET, _caps(tenant_max_jobs=0))  # no quota at all
    assert not may_defer(tiny, NET, _caps(tenant_max_result_bytes=QUOTA_ROOM * _tiny_size() - 1))
    assert not may_defer(tiny, NET, _caps(max_result_bytes=_tiny_size()))  # near the limit
    assert not may_defer(tiny, NET, _caps(max_nodes=NET.n_nodes - 1))


def test_a_submit_loop_returns_at_once_and_shares_calls(namespace, thread_server) -> None:
    server = thread_server(namespace("pipeline-calls"))  # no workers: the jobs stay queued
    slow = CountCalls(0.3, hold=SUBMITS)
    with Client(server.address, timeout=30, interceptors=[slow]) as client:
        client.register(NET)
        t0 = time.monotonic()
        handles = [client.submit(NET, X1 * i) for i in range(40)]
        took = time.monotonic() - t0
        assert handles[-1]._pending is not None and not handles[-1]._pending.answered  # still on its way
        assert repr(handles[-1]) == f"JobHandle('{handles[-1].name}', state='queued')"  # waits for the answer
        assert handles[-1].job.state == job_pb2.JOB_STATE_QUEUED  # the latest state: waits for the answer
        client.flush()
        names = [h.name for h in handles]
        assert len(set(names)) == 40 and all(n.startswith("jobs/") for n in names)
        assert all(h.job is not None and h.job.state == job_pb2.JOB_STATE_QUEUED for h in handles)
        assert took < 0.3 * 40 / 4, took  # a call per job would take 12 s
        sent = [c for c in slow.calls if c in SUBMITS]
        assert len(sent) <= 4 and "SubmitJob" not in sent, sent  # batched, not a call a job
        assert [client.get_job(n).state for n in names[:3]] == [job_pb2.JOB_STATE_QUEUED] * 3


def test_a_loop_of_submits_then_waits_gives_each_job_its_own_result(cluster) -> None:
    modes: list[dict[str, Any]] = [{}, {"loss": "mse"}, {"loss": "mse", "per_example": True},
                                   {"loss": "mse", "norms": True}, {"dtype": "float32"}]
    rng = np.random.default_rng(7)
    work = []
    for i in range(30):
        x = rng.normal(size=(1 + i % 3, NET.n_inputs))
        t = rng.uniform(size=(x.shape[0], NET.n_outputs))
        mode = modes[i % len(modes)]
        work.append((x, t if "loss" in mode else None, mode))
    with Client(cluster.address, timeout=60) as client:
        handles = [client.submit(NET, x, targets=t, **mode) for x, t, mode in work]
        assert any(h._pending is not None for h in handles)  # some were answered after submit() returned
        for handle, (x, t, mode) in zip(handles, work):
            assert handle.wait().state == job_pb2.JOB_STATE_SUCCEEDED
            assert handle.result() == served(NET, x, t, settings=cluster.settings, **mode)


def test_close_sends_what_submit_queued(cluster) -> None:
    slow = CountCalls(0.2, hold=SUBMITS)
    client = Client(cluster.address, timeout=60, interceptors=[slow])
    client.register(NET)
    handles = [client.submit(NET, X1 + i) for i in range(10)]
    client.close()  # still queued behind the slow first call: sent before the channel closes
    with Client(cluster.address, timeout=60) as other:
        for i, handle in enumerate(handles):
            assert other.job(handle.name).result() == served(NET, X1 + i, settings=cluster.settings)


def test_a_refusal_after_submit_returned_is_raised_by_the_handle(namespace, thread_server) -> None:
    size = _tiny_size()
    server = thread_server(namespace("pipeline-refused", tenant_max_result_bytes=QUOTA_ROOM * size))
    with Client(server.address, timeout=30) as client:
        filled = client.submit_many([{"net": NET, "inputs": X1 + i} for i in range(QUOTA_ROOM + 2)])
        assert isinstance(filled[-1], errors.ResourceExhausted)  # the quota is full
        with pytest.raises(errors.ResourceExhausted):
            client.submit(NET, X1)  # a submit() on its own is answered at once: refused there
        handle = client.submit(NET, X1)  # in a loop, the client could not tell: sent later, refused then
        assert handle._pending is not None
        assert repr(handle) == "JobHandle('', state='refused')"  # printing it never raises
        with pytest.raises(errors.ResourceExhausted, match="EDGEGRAD_TENANT_MAX_RESULT_BYTES"):
            handle.wait()
        with pytest.raises(errors.ResourceExhausted):
            handle.name  # noqa: B018 - every use of the handle says why
        with pytest.raises(errors.ResourceExhausted):
            handle.cancel()


def test_submissions_it_cannot_vouch_for_are_answered_at_once(namespace, thread_server) -> None:
    server = thread_server(namespace("pipeline-sync"))
    with Client(server.address, timeout=30) as client:
        for _ in range(3):  # in a loop, but each one of a kind the client cannot vouch for
            assert client.submit(NET, X1, request_id=f"pipeline-{time.time_ns()}")._pending is None
            assert client.submit(NET, X1, shard_rows=1)._pending is None
        time.sleep(0.2)
        assert client.submit(NET, X1)._pending is None  # a submit() on its own: answered before it returns
        assert client.submit(NET, X1)._pending is not None  # the next one at once after it: a loop
    with Client(server.address, timeout=30, pipelining=False) as client:
        handles = [client.submit(NET, X1) for _ in range(3)]
        assert all(h._pending is None and h.state.name for h in handles)


def test_a_lone_submit_then_wait_is_one_call(cluster) -> None:
    slow = CountCalls()
    with Client(cluster.address, timeout=60, interceptors=[slow]) as client:
        client.register(NET)
        for i in range(3):
            assert client.submit(NET, X1 - i).result() == served(NET, X1 - i, settings=cluster.settings)
        assert [c for c in slow.calls if c in SUBMITS] == ["Compute"] * 3  # submit and watch in one stream


def test_a_script_that_submits_and_ends_sends_every_job(namespace, thread_server, tmp_path) -> None:
    server = thread_server(namespace("pipeline-exit"))  # no workers: the jobs stay, listed
    script = tmp_path / "submit_and_exit.py"
    script.write_text(
        "import sys, numpy as np\n"
        "from edgegrad.client import Client\n"
        "from svc_helpers import example_network\n"
        "net = example_network(seed=2077)\n"
        "c = Client(sys.argv[1])\n"
        "handles = [c.submit(net, np.full((1, net.n_inputs), i / 7)) for i in range(5)]\n"
        "print(' '.join(h.name for h in handles))\n"
        "[c.submit(net, np.full((1, net.n_inputs), 10.0 + i)) for i in range(30)]  # never looked at, not closed\n")
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.abspath(__file__))}
    named = subprocess.run([sys.executable, str(script), server.address], capture_output=True, text=True,
                           timeout=120, env=env, check=True).stdout.split()
    with Client(server.address, timeout=60) as client:
        listed = {job.name for job in client.list_jobs()}
    assert len(listed) == 35 and set(named) <= listed


def test_submissions_refused_by_an_outage_are_sent_again(namespace, thread_server, tmp_path) -> None:
    persist = ("--appendonly", "yes", "--appendfsync", "always")
    redis_server = RedisProcess(tmp_path / "redis", *persist).start()
    server = thread_server(namespace("pipeline-outage").with_(redis_url=f"redis://127.0.0.1:{redis_server.port}/0"))
    back: list[RedisProcess] = []
    try:
        with Client(server.address, timeout=60) as client:
            client.register(NET)
            redis_server.kill()  # the server answers each item UNAVAILABLE until Redis is back
            restart = threading.Timer(1.5, lambda: back.append(
                RedisProcess(redis_server.folder, *persist, port=redis_server.port).start()))
            restart.start()
            many = client.submit_many([{"net": NET, "inputs": X1 + i} for i in range(5)])
            looped = [client.submit(NET, X1 - i) for i in range(5)]
            restart.join()
            assert back, "redis did not restart"
            names = [h.name for h in many] + [h.name for h in looped]  # each one created once Redis was back
            assert len(set(names)) == 10
            assert {client.get_job(n).state for n in names} == {job_pb2.JOB_STATE_QUEUED}
    finally:
        for process in back:
            process.kill()


def test_an_idle_client_holds_no_sender_thread(namespace, thread_server, monkeypatch) -> None:
    monkeypatch.setattr(submitter, "IDLE_SECONDS", 0.2)
    server = thread_server(namespace("pipeline-idle"))
    with Client(server.address, timeout=30) as client:
        for round_ in range(2):
            handles = [client.submit(NET, X1 * i) for i in range(5)]
            client.flush()
            assert all(h.name for h in handles)
            thread = client._submitter._thread
            assert thread is not None and thread.is_alive()
            thread.join(5)
            assert not thread.is_alive() and client._submitter._thread is None, round_  # a later loop starts anew
