"""Per-tenant limits (jobs queued or running, result bytes held): exact under concurrency, released
when jobs end, are deleted or expire. Real Redis, in-process servers, real burst workers."""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import redis
from svc_helpers import burst_worker, example_network, gradient_request
from test_tenants import As, token_file

from edgegrad import errors
from edgegrad.client import Client
from edgegrad.jobs.keys import Keys
from edgegrad.server.cluster import Cluster
from edgegrad.v1 import job_pb2, service_pb2, service_pb2_grpc
from edgegrad.wire.chunking import result_bytes

NET = example_network(seed=9)
X = np.random.default_rng(9).normal(size=(4, NET.n_inputs))


def submit(stub: As, request_id: str = "", scale: float = 1.0) -> job_pb2.Job:
    """A small job by its inline network."""
    return stub.SubmitJob(service_pb2.SubmitJobRequest(request=gradient_request(NET, X * scale),
                                                       request_id=request_id))


def exhausted(stub: As, **kw) -> grpc.RpcError:
    """The RESOURCE_EXHAUSTED a submission gets."""
    with pytest.raises(grpc.RpcError) as err:
        submit(stub, **kw)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    return err.value


def usage(settings, tenant: str) -> tuple[int, int]:
    """(jobs counted in flight, result bytes counted held) of a tenant, read from Redis as CREATE counts them."""
    keys = Keys(settings.key_prefix, tenant)
    r = redis.Redis.from_url(settings.redis_url)
    try:
        seconds, micros = r.time()
        return r.zcount(keys.inflight, seconds * 1000 + micros // 1000, "+inf"), int(r.hget(keys.held, "total") or 0)
    finally:
        r.close()


def stubs_for(server):
    channel = grpc.insecure_channel(server.address)
    stub = service_pb2_grpc.EdgegradStub(channel)
    return channel, As(stub, "alice-token-1"), As(stub, "bob-token-1")


def test_jobs_in_flight_are_limited_per_tenant_and_released_when_they_end(namespace, thread_server, tmp_path) -> None:
    settings = namespace("tlimit", auth_token_file=token_file(tmp_path / "tokens"), tenant_max_jobs=3)
    server = thread_server(settings)
    channel, alice, bob = stubs_for(server)
    with channel:
        first = [submit(alice, request_id=f"r{i}") for i in range(3)]
        err = exhausted(alice)
        assert "EDGEGRAD_TENANT_MAX_JOBS" in err.details() and "3" in err.details()
        assert submit(alice, request_id="r1").name == first[1].name  # a retried submit is no new job
        assert [submit(bob).state for _ in range(3)] == [job_pb2.JOB_STATE_QUEUED] * 3  # bob has his own
        exhausted(bob)
        alice.CancelJob(service_pb2.CancelJobRequest(name=first[0].name))
        fourth = submit(alice)
        exhausted(alice)
        alice.DeleteJob(service_pb2.DeleteJobRequest(name=first[1].name))
        fifth = submit(alice)
        exhausted(alice)
        assert usage(settings, "alice")[0] == 3
        burst_worker(settings)  # the queued jobs succeed: nothing is in flight any more
        for job in (first[2], fourth, fifth):
            assert alice.GetJob(service_pb2.GetJobRequest(name=job.name)).state == job_pb2.JOB_STATE_SUCCEEDED
        assert usage(settings, "alice")[0] == usage(settings, "bob")[0] == 0
        assert [submit(alice).state for _ in range(3)] == [job_pb2.JOB_STATE_QUEUED] * 3


def test_the_job_limit_is_exact_under_concurrent_submissions(namespace, thread_server, tmp_path) -> None:
    settings = namespace("tconc", auth_token_file=token_file(tmp_path / "tokens"), tenant_max_jobs=5)
    server = thread_server(settings)
    channel, alice, _ = stubs_for(server)
    with channel:
        reply = alice.SubmitJobs(service_pb2.SubmitJobsRequest(requests=[service_pb2.SubmitJobRequest(
            request=gradient_request(NET, X * (i + 1))) for i in range(12)]))
        codes = [r.error.code for r in reply.results]
        assert codes.count(0) == 5 and codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]) == 7
        for job in alice.ListJobs(service_pb2.ListJobsRequest()).jobs:
            alice.DeleteJob(service_pb2.DeleteJobRequest(name=job.name))

        def one(i: int) -> grpc.StatusCode:
            try:
                submit(alice, scale=i + 2.0)
                return grpc.StatusCode.OK
            except grpc.RpcError as exc:
                return exc.code()

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(one, range(24)))
        assert answers.count(grpc.StatusCode.OK) == 5
        assert answers.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 19
        assert usage(settings, "alice")[0] == 5


def test_queued_jobs_that_expire_stop_counting(namespace, thread_server, tmp_path) -> None:
    settings = namespace("texpire", auth_token_file=token_file(tmp_path / "tokens"), tenant_max_jobs=2,
                         job_ttl=2)
    server = thread_server(settings)
    channel, alice, _ = stubs_for(server)
    with channel:
        submit(alice), submit(alice)
        exhausted(alice)
        time.sleep(2.5)
        assert submit(alice).state == job_pb2.JOB_STATE_QUEUED
        assert usage(settings, "alice")[0] == 1


def test_result_bytes_held_are_limited_until_jobs_are_deleted(namespace, thread_server, tmp_path) -> None:
    probe = namespace("tbytes0")
    with grpc.insecure_channel(thread_server(probe).address) as channel:
        size = result_bytes(service_pb2_grpc.EdgegradStub(channel).SubmitJob(
            service_pb2.SubmitJobRequest(request=gradient_request(NET, X))).layout)
    settings = namespace("tbytes", auth_token_file=token_file(tmp_path / "tokens"),
                         tenant_max_result_bytes=2 * size + size // 2)
    server = thread_server(settings)
    channel, alice, bob = stubs_for(server)
    with channel:
        one, two = submit(alice), submit(alice)
        err = exhausted(alice)
        assert "EDGEGRAD_TENANT_MAX_RESULT_BYTES" in err.details()
        submit(bob)
        burst_worker(settings)  # finished jobs still hold their results
        assert alice.GetJob(service_pb2.GetJobRequest(name=one.name)).state == job_pb2.JOB_STATE_SUCCEEDED
        exhausted(alice)
        assert usage(settings, "alice") == (0, 2 * size)
        alice.DeleteJob(service_pb2.DeleteJobRequest(name=two.name))
        assert usage(settings, "alice") == (0, size)
        submit(alice)
        exhausted(alice)
        assert usage(settings, "bob") == (0, size)


def test_a_job_whose_worker_is_killed_ends_in_its_tenant_and_stops_counting(namespace, tmp_path) -> None:
    big = example_network(n_inputs=16, n_nodes=150, n_outputs=4, density=0.5, seed=5)
    x = np.random.default_rng(5).normal(size=(48000, big.n_inputs))  # one shard of a few seconds
    t = np.random.default_rng(6).uniform(size=(48000, big.n_outputs))
    settings = namespace("tkill", auth_token_file=token_file(tmp_path / "tokens"), job_retries=0, tenant_max_jobs=1)
    with Cluster(settings, workers=2, log=sys.stderr) as cluster, \
            Client(cluster.address, token="alice-token-1", timeout=120) as client:
        cluster.wait_for_workers()
        handle = client.submit(big, x, targets=t, loss="mse", shard_rows=48000)
        deadline = time.monotonic() + 60
        while (job := handle.refresh()).state != job_pb2.JOB_STATE_RUNNING:
            assert job.state == job_pb2.JOB_STATE_QUEUED and time.monotonic() < deadline
            time.sleep(0.01)
        with pytest.raises(errors.ResourceExhausted):
            client.submit(big, x[:2], targets=t[:2], loss="mse")
        cluster.kill_worker([cluster.worker_name(i) for i in range(2)].index(job.worker))
        with pytest.raises(errors.JobFailed):
            handle.result()
        assert handle.refresh().error.code == grpc.StatusCode.ABORTED.value[0]
        assert usage(settings, "alice")[0] == 0
        assert client.submit(big, x[:2], targets=t[:2], loss="mse").wait().state == job_pb2.JOB_STATE_SUCCEEDED
