"""Faults with real processes: garbage on the queue, Redis SIGKILLed and restarted from its AOF under bare
workers, the server SIGKILLed mid-stream."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest
import redis
from redis_process import RedisProcess
from rq import Queue
from rq.serializers import JSONSerializer
from svc_helpers import example_network

import edgegrad
from edgegrad.jobs.contract import JOB_FUNCTION
from edgegrad.jobs.keys import Keys
from edgegrad.server.cluster import Cluster
from edgegrad.v1 import service_pb2, service_pb2_grpc

NET = example_network(n_inputs=3, n_nodes=12, n_outputs=2, seed=21)


def _garbage(connection: redis.Redis, queue: str) -> list[str]:
    """Push entries rq cannot run onto ``queue``: no hash, undecodable data, broken fields, foreign calls."""
    q = Queue(queue, connection=connection, serializer=JSONSerializer)
    template = q.enqueue_call(JOB_FUNCTION, args=("0" * 26, 0), job_id=f"{queue}-template")
    fields = connection.hgetall(template.key)
    connection.delete(template.key)
    connection.lrem(q.key, 0, template.id)
    changes = {"nohash": None, "notjson": {b"data": b"\x00garbage"}, "object": {b"data": b'{"a": 1}'},
               "short": {b"data": json.dumps([JOB_FUNCTION]).encode()}, "nodata": {b"data": b""},
               "created": {b"created_at": b"yesterday"}, "timeout": {b"timeout": b"soon"},
               "status": {b"status": b"\xff\xfe"}, "retries": {b"retries_left": b"many"},
               "foreign": {b"data": json.dumps(["os.system", None, ["true"], {}]).encode()},
               "kwargs": {b"data": json.dumps([JOB_FUNCTION, None, [{"x": 1}], {"zz": 1}]).encode()}}
    ids = []
    for name, change in changes.items():
        job_id = f"{queue}-{name}"
        if change is not None:
            connection.hset(f"rq:job:{job_id}", mapping={**fields, **change})
            connection.expire(f"rq:job:{job_id}", 600)
        connection.rpush(q.key, job_id)
        ids.append(job_id)
    return ids


def test_a_worker_fed_garbage_fails_each_entry_and_keeps_serving(namespace, tmp_path) -> None:
    settings = namespace("garbage")
    log = open(tmp_path / "cluster.log", "w+")
    with Cluster(settings, workers=1, log=log) as cluster:
        cluster.wait_for_workers()
        connection = redis.Redis.from_url(settings.redis_url)
        ids = _garbage(connection, settings.queue)
        deadline = time.monotonic() + 30
        while connection.llen(f"rq:queue:{settings.queue}") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert connection.llen(f"rq:queue:{settings.queue}") == 0, "the worker stopped taking entries"
        x = np.random.default_rng(1).normal(size=(3, NET.n_inputs))
        with edgegrad.Client(cluster.address, timeout=60) as client:
            remote = client.gradients(NET, x)
        np.testing.assert_allclose(remote.edge_grads, edgegrad.gradients(NET, x).edge_grads, rtol=1e-12, atol=0)
        assert cluster.workers[0].poll() is None, "the worker exited"
        failed = {m.decode() for m in connection.zrange(f"rq:failed:{settings.queue}", 0, -1)}
        readable = set(ids) - {f"{settings.queue}-nohash", f"{settings.queue}-nodata"}
        assert readable <= failed, readable - failed  # each one recorded as failed (entries with a hash)
        connection.delete(*[f"rq:job:{i}" for i in ids], *[f"rq:results:{i}" for i in ids])
        connection.close()
    log.seek(0)
    text = log.read()
    assert "unhandled exception" not in text and "quitting" not in text, text[-3000:]
    assert "refusing job" in text and "dropping queue entry" in text


def _worker(settings, env, name: str, log) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edgegrad", "worker", "--name", name, "--log-level", "INFO"],
                            env=env, stdout=log, stderr=log, start_new_session=True)


def test_bare_workers_and_the_server_ride_out_redis_sigkilled_and_restarted_from_its_aof(namespace, tmp_path) -> None:
    persist = ("--appendonly", "yes", "--appendfsync", "always")
    current = RedisProcess(tmp_path / "redis", *persist).start()
    settings = namespace("aof").with_(redis_url=f"redis://127.0.0.1:{current.port}/0")  # a Redis of its own
    log = open(tmp_path / "cluster.log", "w+")
    late = None
    try:
        with Cluster(settings, workers=2, log=log) as cluster:
            cluster.wait_for_workers()
            rng = np.random.default_rng(5)
            batches = [rng.normal(size=(2, NET.n_inputs)) for _ in range(30)]
            with edgegrad.Client(cluster.address, timeout=120) as client:
                handles = [client.submit(NET, x) for x in batches]
                current.kill()  # with jobs still queued
                with grpc.insecure_channel(cluster.address) as channel:
                    with pytest.raises(grpc.RpcError) as err:
                        service_pb2_grpc.EdgegradStub(channel).GetJob(
                            service_pb2.GetJobRequest(name=handles[0].name), timeout=10)
                    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
                late = _worker(settings, cluster._env, f"{settings.queue}.late", log)  # started during the outage
                time.sleep(3)
                assert [w.poll() for w in cluster.workers] == [None, None] and late.poll() is None, \
                    "a bare worker exited while Redis was down"
                current = RedisProcess(current.folder, *persist, port=current.port).start()  # from its AOF
                results = [h.result(timeout=120) for h in handles]  # the same server, never restarted
            for x, got in zip(batches, results):
                np.testing.assert_allclose(got.edge_grads, edgegrad.gradients(NET, x).edge_grads, rtol=1e-12, atol=0)
            assert cluster.server.poll() is None
            assert [w.poll() for w in cluster.workers] == [None, None] and late.poll() is None
            late.terminate()
            try:
                late.wait(30)
            except subprocess.TimeoutExpired:
                log.seek(0)
                pytest.fail("the late worker did not stop on SIGTERM: " + log.read()[-4000:])
    finally:
        if late is not None and late.poll() is None:
            late.kill()
        current.stop()
    log.seek(0)
    text = log.read()
    at = max(text.find("Traceback"), text.find("quitting"))
    assert at < 0, text[max(0, at - 1500):at + 3000]
    assert 1 <= text.count("redis unreachable") <= 3, text[-3000:]  # once per worker, not once per retry


def test_clients_resume_bit_identical_after_the_server_is_sigkilled_mid_stream(namespace, tmp_path) -> None:
    settings = namespace("serverkill", result_buffer_bytes=512 * 1024, chunk_bytes=16 * 1024)
    net = example_network(n_inputs=4, n_nodes=30, n_outputs=3, density=0.4, seed=22)
    x = np.random.default_rng(6).normal(size=(800, net.n_inputs))
    keys = Keys(settings.key_prefix)
    log = open(tmp_path / "cluster.log", "w+")
    with Cluster(settings, workers=1, log=log) as cluster:
        cluster.wait_for_workers()
        connection = redis.Redis.from_url(settings.redis_url)
        out: dict = {}

        def watch() -> None:
            with edgegrad.Client(cluster.address, timeout=120) as client:
                out["handle"] = client.submit(net, x, targets=None)
                out["result"] = out["handle"].result(timeout=120)

        reader = threading.Thread(target=watch)
        reader.start()
        deadline = time.monotonic() + 60
        killed = False
        while time.monotonic() < deadline and "handle" not in out:
            time.sleep(0.001)
        key = keys.job(out["handle"].name.split("/", 1)[1])
        while time.monotonic() < deadline and not killed:
            done, state = connection.hmget(key, "chunks_done", "state")
            if done and int(done) >= 20 and state == b"2":
                cluster.server.kill()  # SIGKILL, mid-stream: the job is running, the client reading
                cluster.server.wait()
                killed = True
            time.sleep(0.002)
        assert killed, "the job never got far enough to kill the server mid-stream"
        port = cluster.port
        time.sleep(0.5)
        cluster.server = subprocess.Popen([sys.executable, "-m", "edgegrad", "server", "--listen", f"127.0.0.1:{port}"],
                                          env=cluster._env, stdout=log, stderr=log, start_new_session=True)
        t0 = time.monotonic()
        reader.join(120)
        print("resumed in", time.monotonic() - t0)
        assert "result" in out, "the client did not resume"
        got = out["result"]
        with edgegrad.Client(cluster.address, timeout=120) as client:
            again = client.gradients(net, x)  # the same job with no fault on the way
        assert got.outputs.tobytes() == again.outputs.tobytes()
        assert got.edge_grads.tobytes() == again.edge_grads.tobytes()
        local = edgegrad.gradients(net, x)
        np.testing.assert_allclose(got.edge_grads, local.edge_grads, rtol=1e-9, atol=1e-300)
        connection.close()
