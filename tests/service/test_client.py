"""``edgegrad.Client`` against a real server, real worker processes and real Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ThreadServer
from redis_process import free_port
from svc_helpers import CountCalls, assert_json_close, example_network, served

import edgegrad
from edgegrad import errors
from edgegrad.cli.io import dumps_result
from edgegrad.client import Backoff, Client
from edgegrad.server.app import create_server
from edgegrad.v1 import job_pb2

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NET = example_network(seed=11)
RNG = np.random.default_rng(5)
X = RNG.normal(size=(9, NET.n_inputs))
T = RNG.uniform(size=(9, NET.n_outputs))
# Big enough for hundreds of 64 KiB chunks (B·K·E float64 values in output mode).
BIG = example_network(n_inputs=10, n_nodes=120, n_outputs=4, density=0.5, seed=12)
BIG_X = np.random.default_rng(6).normal(size=(64, BIG.n_inputs))

MODES = [
    {},
    {"loss": "mse"},
    {"loss": "mse", "reduction": "sum"},
    {"loss": "mse", "per_example": True},
    {"loss": "bce"},
    {"loss": "softmax_ce", "reduction": "sum", "per_example": True},
    {"dtype": "float32"},
    {"loss": "mse", "dtype": "float32"},
]


def _ids(options: dict) -> str:
    return "-".join(f"{k}={v}" for k, v in options.items()) or "output-mode"


def _call(options: dict) -> dict:
    """Keyword arguments of a gradients call in this mode (bce needs outputs in [0, 1])."""
    kwargs = dict(options)
    if "loss" in kwargs:
        kwargs["targets"] = T
    return kwargs


class FixedPortServer(ThreadServer):
    """An in-process server on a chosen port, so it can be restarted where clients expect it."""

    def __init__(self, settings, port: int) -> None:
        self._port = port
        super().__init__(settings)

    async def _start(self, settings, kwargs):
        app = create_server(settings, f"127.0.0.1:{self._port}", **kwargs)
        await app.start()
        return app



@pytest.fixture(scope="module")
def client(cluster):
    with Client(cluster.address, timeout=60) as c:
        yield c


@pytest.mark.parametrize("options", MODES, ids=_ids)
def test_gradients_equal_the_in_process_call_bit_for_bit(client, cluster, options) -> None:
    kwargs = _call(options)
    net = NET
    if options.get("loss") == "bce":  # outputs must lie in [0, 1]: squash them
        net = edgegrad.Network.from_arrays(NET.inputs, NET.outputs, NET.node_ids,
                                           ["sigmoid"] * NET.n_nodes, NET.biases, NET.src, NET.dst, NET.weights)
    remote = client.gradients(net, X, **kwargs)
    local = served(net, X, settings=cluster.settings, **kwargs)  # what the service computes, in process
    for field in ("outputs", "edge_grads", "deltas"):
        a, b = getattr(remote, field), getattr(local, field)
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), field
    assert remote.loss == local.loss and type(remote.loss) is type(local.loss)
    # submit() + result() is the same computation through a job handle
    handle = client.submit(net, X, **kwargs)
    assert handle.name.startswith("jobs/")
    assert handle.result() == local


def test_a_network_is_registered_once_per_client(cluster) -> None:
    counter = CountCalls()
    net = example_network(seed=21)
    with Client(cluster.address, timeout=60, interceptors=[counter]) as c:
        for _ in range(3):
            c.gradients(net, X)
        c.submit(net, X).wait()
    assert counter.counts.get("RegisterNetwork") == 1 and counter.counts.get("GetNetwork") == 1
    # submit() sends its job as a Compute stream that wait() then reads: one call per job
    assert counter.counts.get("Compute") == 4 and "SubmitJob" not in counter.counts and "WatchJob" not in counter.counts
    with Client(cluster.address, timeout=60, interceptors=[counter]) as c:
        c.gradients(net, X)  # a new client asks once, and the server already has it
    assert counter.counts["GetNetwork"] == 2 and counter.counts["RegisterNetwork"] == 1


def test_chunks_resume_after_the_stream_is_cut(client, cluster) -> None:
    handle = client.submit(BIG, BIG_X)
    seqs = []
    for chunk in handle.chunks():
        seqs.append(chunk.seq)
        if len(seqs) in (3, 40):
            handle._drop_stream()
    final = handle.job
    assert handle.reconnects >= 2
    assert seqs == list(range(1, final.layout.chunk_count + 1)), "no gap and no duplicate"
    assert final.layout.chunk_count > 100
    assert handle.result() == served(BIG, BIG_X, settings=cluster.settings)


def test_the_iterator_continues_after_the_server_restarts_mid_stream(cluster) -> None:
    """With the default backoff and a deadline, a server that is down for seconds is ridden out."""
    port = free_port()
    first = FixedPortServer(cluster.settings, port)
    second: list[FixedPortServer] = []
    restart = threading.Timer(3.0, lambda: second.append(FixedPortServer(cluster.settings, port)))
    try:
        with Client(f"127.0.0.1:{port}", timeout=60) as c:
            handle = c.submit(BIG, BIG_X)
            seqs = []
            for chunk in handle.chunks():
                seqs.append(chunk.seq)
                if len(seqs) == 5:
                    first.stop()  # graceful: health NOT_SERVING, open streams end
                    restart.start()
            assert handle.reconnects >= 1
            assert seqs == list(range(1, handle.job.layout.chunk_count + 1))
            assert handle.result() == served(BIG, BIG_X, settings=cluster.settings)
    finally:
        restart.join()
        first.stop()
        for server in second:
            server.stop()


def test_unavailable_is_retried_with_backoff_until_the_server_is_up(cluster) -> None:
    port = free_port()
    started: list[FixedPortServer] = []
    timer = threading.Timer(0.8, lambda: started.append(FixedPortServer(cluster.settings, port)))
    timer.start()
    try:
        with Client(f"127.0.0.1:{port}", timeout=30, backoff=Backoff(initial=0.05, maximum=0.3, attempts=60)) as c:
            t0 = time.monotonic()
            res = c.gradients(NET, X)  # first call lands while nothing listens
            assert time.monotonic() - t0 >= 0.5, "the call cannot have succeeded before the server started"
        assert res == served(NET, X, settings=cluster.settings)
    finally:
        timer.join()
        for server in started:
            server.stop()


def test_retries_give_up_with_unavailable_when_nobody_answers() -> None:
    with Client(f"127.0.0.1:{free_port()}", backoff=Backoff(initial=0.01, maximum=0.02, attempts=3)) as c:
        with pytest.raises(errors.Unavailable):
            c.capabilities(timeout=10)


def test_the_same_request_id_is_the_same_job(client, cluster) -> None:
    rid = f"client-test-{time.time_ns()}"
    a = client.submit(NET, X, request_id=rid)
    b = client.submit(NET, X, request_id=rid)
    assert a.name == b.name
    with pytest.raises(errors.AlreadyExists):
        client.submit(NET, X * 2, request_id=rid)
    assert a.result() == b.result() == served(NET, X, settings=cluster.settings)


def test_cancel_a_queued_job(namespace, thread_server) -> None:
    server = thread_server(namespace("client-cancel"))  # no workers: the job stays queued
    with Client(server.address, timeout=30) as c:
        handle = c.submit(NET, X)
        assert handle.job.state == job_pb2.JOB_STATE_QUEUED
        state = handle.cancel()
        assert state.state == job_pb2.JOB_STATE_CANCELLED
        with pytest.raises(errors.Cancelled):
            handle.result()
        assert c.get_job(handle.name).state == job_pb2.JOB_STATE_CANCELLED
        assert handle.state_name == "cancelled" and repr(handle) == f"JobHandle('{handle.name}', state='cancelled')"


def test_job_handles_print_state_names(client) -> None:
    handle = client.submit(NET, X)
    assert repr(handle) in (f"JobHandle('{handle.name}', state='queued')",
                            f"JobHandle('{handle.name}', state='running')")
    handle.result()
    assert repr(handle) == f"JobHandle('{handle.name}', state='succeeded')"
    assert [edgegrad.client.state_name(s) for s in (1, 4, 99)] == ["queued", "failed", "99"]


def test_a_deadline_bounds_the_wait(namespace, thread_server) -> None:
    server = thread_server(namespace("client-deadline"))  # no workers: the job never finishes
    with Client(server.address) as c:
        handle = c.submit(NET, X)
        t0 = time.monotonic()
        with pytest.raises(errors.EdgegradError) as err:
            handle.wait(timeout=0.5)
        assert err.value.code == "DEADLINE_EXCEEDED"
        assert time.monotonic() - t0 < 20


def test_bearer_token(cluster, thread_server) -> None:
    server = thread_server(cluster.settings.with_(auth_token="s3cret-token"))
    with Client(server.address, timeout=30, token="") as c:
        with pytest.raises(errors.Unauthenticated):
            c.capabilities()
    with Client(server.address, timeout=30, token="wrong") as c:
        with pytest.raises(errors.Unauthenticated):
            c.gradients(NET, X)
    with Client(server.address, timeout=60, token="s3cret-token") as c:
        assert c.gradients(NET, X, targets=T, loss="mse") == served(NET, X, T, loss="mse", settings=cluster.settings)


def test_errors_map_to_the_edgegrad_hierarchy(client) -> None:
    with pytest.raises(errors.NotFound):
        client.get_job("jobs/" + "0" * 26)
    with pytest.raises(errors.InvalidInput) as err:
        client.get_job("not-a-job")
    assert err.value.field == "name" and err.value.message.startswith("name: ")
    # bad inputs are refused with the in-process message before anything is sent
    with pytest.raises(errors.InvalidInput, match=r"^inputs: expected shape \(B, 3\)"):
        client.gradients(NET, np.zeros((2, 5)))
    # a problem only the worker sees (bce on outputs outside [0, 1]) keeps its class and message
    t = np.full((X.shape[0], NET.n_outputs), 0.5)
    with pytest.raises(errors.InvalidInput) as local:
        edgegrad.gradients(NET, X * 50, targets=t, loss="bce")
    with pytest.raises(errors.InvalidInput) as remote:
        client.gradients(NET, X * 50, targets=t, loss="bce")
    assert remote.value.message == local.value.message


def test_jobs_can_be_listed_and_deleted(client) -> None:
    handle = client.submit(NET, X)
    handle.wait()
    assert handle.name in {job.name for job in client.list_jobs(page_size=7)}
    client.delete_job(handle.name)
    with pytest.raises(errors.NotFound):
        client.get_job(handle.name)


def test_capabilities(client, cluster) -> None:
    caps = client.capabilities()
    assert caps.chunk_bytes == cluster.settings.chunk_bytes
    assert "mse" in caps.losses and "sigmoid" in caps.activations


def test_cli_grad_through_the_server_prints_what_the_in_process_cli_prints(cluster) -> None:
    args = [sys.executable, "-m", "edgegrad", "grad", os.path.join(ROOT, "examples", "xor.json"),
            "--inputs", os.path.join(ROOT, "examples", "xor-inputs.json"),
            "--targets", os.path.join(ROOT, "examples", "xor-targets.json"), "--loss", "mse"]
    local = subprocess.run(args, capture_output=True, text=True, timeout=60)
    remote = subprocess.run([*args, "--server", cluster.address], capture_output=True, text=True, timeout=60)
    assert remote.returncode == 0, remote.stderr
    # the service's numbers bit for bit (a small job: the population engine), the local CLI's (the
    # single-network engine) to 1e-12
    net = edgegrad.Network.load(args[4])
    x, t = (np.array(json.loads(Path(args[i]).read_text()), dtype=np.float64) for i in (6, 8))
    assert json.loads(remote.stdout) == json.loads(dumps_result(net, served(net, x, t, loss="mse",
                                                                            settings=cluster.settings)))
    assert_json_close(json.loads(remote.stdout), json.loads(local.stdout))
    down = subprocess.run([*args, "--server", f"127.0.0.1:{free_port()}"], capture_output=True, text=True,
                          timeout=120)
    assert down.returncode != 0 and down.stdout == "" and down.stderr.startswith("error: server 127.0.0.1:")
    assert "Traceback" not in down.stderr
