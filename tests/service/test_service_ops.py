"""Service operations: auth, graceful shutdown, cancellation, job failures, refused job functions."""

from __future__ import annotations

import sys

import grpc
import numpy as np
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rq import Queue
from rq.serializers import JSONSerializer
from svc_helpers import burst_worker, collect, example_network, gradient_request

import edgegrad
from edgegrad.jobs.keys import Keys
from edgegrad.jobs.worker_store import EMIT_CANCELLED, WorkerStore
from edgegrad.v1 import job_pb2, service_pb2, service_pb2_grpc
from edgegrad.wire import codec

NET = example_network(seed=2)
X = np.random.default_rng(2).normal(size=(5, NET.n_inputs))


def test_bearer_token_is_required_when_configured(namespace, thread_server) -> None:
    server = thread_server(namespace("auth", auth_token="s3cret"))
    with grpc.insecure_channel(server.address) as channel:
        stub = service_pb2_grpc.EdgegradStub(channel)
        for metadata in (None, (("authorization", "Bearer wrong"),), (("authorization", "s3cret"),)):
            with pytest.raises(grpc.RpcError) as err:
                stub.GetCapabilities(service_pb2.GetCapabilitiesRequest(), metadata=metadata)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as err:
            list(stub.WatchJob(service_pb2.WatchJobRequest(name="jobs/" + "0" * 26)))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        caps = stub.GetCapabilities(service_pb2.GetCapabilitiesRequest(),
                                    metadata=(("authorization", "Bearer s3cret"),))
        assert caps.max_batch > 0
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_token_file_is_read(namespace, thread_server, tmp_path) -> None:
    path = tmp_path / "tokens"
    path.write_text("# comment\nalpha\nbeta\n")
    server = thread_server(namespace("authfile", auth_token_file=str(path)))
    with grpc.insecure_channel(server.address) as channel:
        stub = service_pb2_grpc.EdgegradStub(channel)
        assert get_capabilities_with(stub, "beta").chunk_bytes > 0
        with pytest.raises(grpc.RpcError) as err:
            get_capabilities_with(stub, "gamma")
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def get_capabilities_with(stub, token: str) -> service_pb2.Capabilities:
    """GetCapabilities with a bearer token."""
    return stub.GetCapabilities(service_pb2.GetCapabilitiesRequest(), metadata=(("authorization", f"Bearer {token}"),))


def test_sigterm_style_stop_ends_open_streams_cleanly(namespace, thread_server) -> None:
    settings = namespace("shutdown")  # no worker serves this queue: the job waits
    server = thread_server(settings)
    channel = grpc.insecure_channel(server.address)
    stub = service_pb2_grpc.EdgegradStub(channel)
    job = stub.SubmitJob(service_pb2.SubmitJobRequest(request=gradient_request(NET, X)))
    call = stub.WatchJob(service_pb2.WatchJobRequest(name=job.name))
    kinds = [next(call).WhichOneof("event"), next(call).WhichOneof("event")]
    assert kinds == ["state", "heartbeat"]  # heartbeats while the job waits
    health = health_pb2_grpc.HealthStub(channel)
    server.stop()
    with pytest.raises(grpc.RpcError) as err:
        for _ in call:
            pass
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "after_seq" in err.value.details()
    with pytest.raises(grpc.RpcError):
        health.Check(health_pb2.HealthCheckRequest(), timeout=2)
    channel.close()


def test_cancel_a_queued_job_ends_it_and_no_worker_runs_it(namespace, thread_server) -> None:
    settings = namespace("cancel")
    server = thread_server(settings)
    with grpc.insecure_channel(server.address) as channel:
        stub = service_pb2_grpc.EdgegradStub(channel)
        job = stub.SubmitJob(service_pb2.SubmitJobRequest(request=gradient_request(NET, X)))
        cancelled = stub.CancelJob(service_pb2.CancelJobRequest(name=job.name))
        assert cancelled.state == job_pb2.JOB_STATE_CANCELLED
        burst_worker(settings)
        _, chunks, done = collect(stub.WatchJob(service_pb2.WatchJobRequest(name=job.name)))
        assert done.state == job_pb2.JOB_STATE_CANCELLED and not chunks and done.attempt == 0
        assert done.error.code == grpc.StatusCode.CANCELLED.value[0]


def test_cancel_a_running_job_stops_it_between_chunks(namespace, thread_server) -> None:
    settings = namespace("cancelrun")
    server = thread_server(settings)
    net = example_network(n_inputs=8, n_nodes=80, n_outputs=3, density=0.4, seed=4)
    x = np.random.default_rng(4).normal(size=(40, net.n_inputs))
    with grpc.insecure_channel(server.address) as channel:
        stub = service_pb2_grpc.EdgegradStub(channel)
        job = stub.SubmitJob(service_pb2.SubmitJobRequest(request=gradient_request(net, x)))
        job_id = job.name.split("/")[1]
        store = WorkerStore(settings, name="test-worker")  # play the worker, step by step
        started = store.start(job_id)
        assert started.kind == "run"
        from edgegrad.wire import chunking
        layout = job_pb2.ResultLayout.FromString(started.layout)
        chunks = chunking.result_chunks(edgegrad.gradients(net, x), layout)

        def chunks_then_cancel():
            for i, chunk in enumerate(chunks):
                if i == 3:
                    assert stub.CancelJob(service_pb2.CancelJobRequest(name=job.name)).state \
                        == job_pb2.JOB_STATE_CANCELLED  # at once: the worker finds out at its next chunk
                chunk.ClearField("seq")  # workers write chunks without seq: the stream gives it
                yield i + 1, chunk.SerializeToString()

        code, _ = store.emit(job_id, "s:0", chunks_then_cancel(), 0, batch_bytes=1)  # no batching
        assert code == EMIT_CANCELLED  # the cancel lands between chunks
        assert store.fail(job_id, "5", {}) == "was 5"  # CANCEL ended it
        _, got, done = collect(stub.WatchJob(service_pb2.WatchJobRequest(name=job.name)))
        assert done.state == job_pb2.JOB_STATE_CANCELLED
        assert [c.seq for c in got] == [1, 2, 3]


def test_a_failing_job_reports_in_its_status(namespace, thread_server) -> None:
    settings = namespace("fail")
    server = thread_server(settings)
    with grpc.insecure_channel(server.address) as channel:
        stub = service_pb2_grpc.EdgegradStub(channel)
        job = stub.SubmitJob(service_pb2.SubmitJobRequest(request=gradient_request(NET, X)))
        r = redis.Redis.from_url(settings.redis_url)
        r.delete(Keys(settings.key_prefix).network(NET.content_hash))  # the network expires before the job runs
        burst_worker(settings)
        _, chunks, done = collect(stub.WatchJob(service_pb2.WatchJobRequest(name=job.name)))
        assert done.state == job_pb2.JOB_STATE_FAILED and not chunks
        assert done.error.code == grpc.StatusCode.NOT_FOUND.value[0]
        assert "expired" in done.error.message


def test_two_shards_failing_at_once_count_the_job_as_failed_once(namespace, thread_server) -> None:
    """Both shards' FINISH end the same job: the second learns it had ended already, and only one counts it."""
    from prometheus_client import REGISTRY

    from edgegrad.worker.jobs import fail_shard

    settings = namespace("failtwice")
    server = thread_server(settings)

    def failed() -> float:
        return REGISTRY.get_sample_value("edgegrad_jobs_finished_total", {"state": "failed", "tenant": "default"}) or 0.0

    with grpc.insecure_channel(server.address) as channel:
        stub = service_pb2_grpc.EdgegradStub(channel)
        job = stub.SubmitJob(service_pb2.SubmitJobRequest(request=gradient_request(NET, X)))
    job_id = job.name.split("/")[1]
    store = WorkerStore(settings, name="test-worker")
    before = failed()
    fail_shard(store, job_id, 0, "INTERNAL", "shard 0 broke")
    assert failed() == before + 1
    assert store.fail(job_id, "4", {}) == "was 4"
    fail_shard(store, job_id, 1, "INTERNAL", "shard 1 broke too")
    assert failed() == before + 1
    assert store.redis.hget(Keys(settings.key_prefix).job(job_id), "error_message") == b"shard 0 broke"


def test_workers_refuse_functions_that_are_not_edgegrads(namespace, tmp_path) -> None:
    settings = namespace("refuse")
    target = tmp_path / "should-not-exist"
    queue = Queue(settings.queue, connection=redis.Redis.from_url(settings.redis_url), serializer=JSONSerializer)
    rq_job = queue.enqueue("os.mkdir", str(target))
    burst_worker(settings)
    assert not target.exists()
    assert rq_job.get_status(refresh=True) == "failed"
    rq_job.delete()


def test_workers_refuse_edgegrad_jobs_that_carry_callbacks(namespace) -> None:
    """A callback is code too: an allowed function with a callback attached is refused, callback unrun."""
    from rq import Callback

    settings = namespace("refusecb")
    queue = Queue(settings.queue, connection=redis.Redis.from_url(settings.redis_url), serializer=JSONSerializer)
    rq_job = queue.enqueue("edgegrad.worker.jobs.run_gradient_job", "0" * 26,
                           on_success=Callback("os.mkdir"), on_failure=Callback("os.mkdir"))
    burst_worker(settings)
    assert rq_job.get_status(refresh=True) == "failed"
    assert "refused: edgegrad jobs carry no callbacks" in rq_job.latest_result().exc_string
    rq_job.delete()


def test_an_unreachable_redis_is_unavailable_not_unknown(namespace, thread_server) -> None:
    """Clients retry UNAVAILABLE; a Redis outage must not surface as an opaque UNKNOWN."""
    server = thread_server(namespace("noredis").with_(redis_url="redis://127.0.0.1:1/0"))
    with grpc.insecure_channel(server.address) as channel:
        stub = service_pb2_grpc.EdgegradStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.GetJob(service_pb2.GetJobRequest(name="jobs/" + "0" * 26), timeout=30)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert info.value.details().startswith("redis: ")


def test_a_job_whose_worker_dies_with_no_retries_left_ends_failed(namespace) -> None:
    """When rq gives up on an abandoned job, edgegrad's record must not stay RUNNING until its TTL."""
    from edgegrad.server.cluster import Cluster

    with Cluster(namespace("noretry", job_retries=0), workers=1, log=sys.stderr) as cluster:
        with grpc.insecure_channel(cluster.address) as channel:
            stub = service_pb2_grpc.EdgegradStub(channel)
            net = example_network(n_inputs=16, n_nodes=150, n_outputs=4, density=0.5, seed=5)
            x = np.random.default_rng(5).normal(size=(20000, net.n_inputs))  # about 2 s of work
            t = np.random.default_rng(6).uniform(size=(20000, net.n_outputs))
            job = stub.SubmitJob(service_pb2.SubmitJobRequest(request=gradient_request(net, x, t, "mse"),
                                                              shard_rows=20000))  # one shard, killed mid-way
            for event in stub.WatchJob(service_pb2.WatchJobRequest(name=job.name), timeout=60):
                if event.HasField("state") and event.state.state == job_pb2.JOB_STATE_RUNNING:
                    break
            cluster.kill_worker(0)
            cluster.add_worker()  # a live worker runs rq's clean-up, which finds the abandoned job
            _, _, done = collect(stub.WatchJob(service_pb2.WatchJobRequest(name=job.name), timeout=60))
    assert done.state == job_pb2.JOB_STATE_FAILED
    assert done.error.code == grpc.StatusCode.ABORTED.value[0]
    assert "no retries are left" in done.error.message


def _open_watches(stub, names, seconds: float) -> list[str]:
    """Hold a WatchJob open on each job for ``seconds``; the status code each one ended with."""
    import threading

    codes: list[str] = []

    def watch(name: str) -> None:
        try:
            for _ in stub.WatchJob(service_pb2.WatchJobRequest(name=name), timeout=seconds):
                pass
        except grpc.RpcError as exc:
            codes.append(exc.code().name)

    threads = [threading.Thread(target=watch, args=(name,)) for name in names]
    for t in threads:
        t.start()
    return threads, codes


def test_hundreds_of_open_streams_leave_short_calls_working(namespace, thread_server) -> None:
    server = thread_server(namespace("streams", heartbeat_seconds=1.0))  # no workers: jobs stay queued
    net = example_network()
    with grpc.insecure_channel(server.address) as channel:
        stub = service_pb2_grpc.EdgegradStub(channel)
        jobs = [stub.SubmitJob(service_pb2.SubmitJobRequest(request=gradient_request(net, [[0.0] * net.n_inputs])))
                for _ in range(150)]
        threads, codes = _open_watches(stub, [j.name for j in jobs], 4.0)
        import time

        time.sleep(2.0)
        assert stub.GetJob(service_pb2.GetJobRequest(name=jobs[0].name), timeout=5).state == job_pb2.JOB_STATE_QUEUED
        for t in threads:
            t.join()
    assert codes == ["DEADLINE_EXCEEDED"] * 150  # every stream stayed open until the client's deadline


def test_streams_beyond_the_limit_are_resource_exhausted(namespace, thread_server) -> None:
    server = thread_server(namespace("maxstreams", heartbeat_seconds=1.0, max_streams=5))
    net = example_network()
    with grpc.insecure_channel(server.address) as channel:
        stub = service_pb2_grpc.EdgegradStub(channel)
        job = stub.SubmitJob(service_pb2.SubmitJobRequest(request=gradient_request(net, [[0.0] * net.n_inputs])))
        threads, codes = _open_watches(stub, [job.name] * 8, 2.0)
        for t in threads:
            t.join()
    assert sorted(codes) == ["DEADLINE_EXCEEDED"] * 5 + ["RESOURCE_EXHAUSTED"] * 3


def test_a_network_redis_lost_is_registered_again_by_the_client(namespace, thread_server) -> None:
    """The server's memory of registered networks never outlives Redis: submit and GetNetwork re-check."""
    settings = namespace("lostnet")
    server = thread_server(settings)
    net = example_network(seed=11)
    x = [[0.5] * net.n_inputs]
    keys = Keys(settings.key_prefix)
    r = redis.Redis.from_url(settings.redis_url)
    with grpc.insecure_channel(server.address) as channel:
        stub = service_pb2_grpc.EdgegradStub(channel)
        stub.RegisterNetwork(service_pb2.RegisterNetworkRequest(network=codec.network_to_proto(net)))
        by_hash = gradient_request(None, x)
        by_hash.network_hash = net.content_hash
        stub.SubmitJob(service_pb2.SubmitJobRequest(request=by_hash))          # known: accepted
        r.delete(keys.network(net.content_hash), keys.network_meta(net.content_hash))  # as a Redis restart would
        for call in (lambda: stub.SubmitJob(service_pb2.SubmitJobRequest(request=by_hash)),
                     lambda: stub.GetNetwork(service_pb2.GetNetworkRequest(hash=net.content_hash))):
            with pytest.raises(grpc.RpcError) as info:
                call()
            assert info.value.code() == grpc.StatusCode.NOT_FOUND
    with edgegrad.Client(server.address, timeout=30) as client:
        handle = client.submit(net, x)  # registers again on its own
    assert r.exists(keys.network(net.content_hash))
    assert handle.name.startswith("jobs/")
    r.close()


def test_the_job_index_forgets_jobs_past_every_ttl(namespace, thread_server) -> None:
    import time

    settings = namespace("index", job_ttl=1, result_ttl=1)
    server = thread_server(settings)
    r = redis.Redis.from_url(settings.redis_url)
    with grpc.insecure_channel(server.address) as channel:
        stub = service_pb2_grpc.EdgegradStub(channel)
        old = stub.SubmitJob(service_pb2.SubmitJobRequest(request=gradient_request(NET, X)))
        time.sleep(2.2)
        new = stub.SubmitJob(service_pb2.SubmitJobRequest(request=gradient_request(NET, X)))
    members = [m.decode() for m in r.zrange(Keys(settings.key_prefix).jobs, 0, -1)]
    assert members == [new.name.split("/")[1]] and old.name.split("/")[1] not in members
    r.close()


def test_a_quick_jobs_stream_expires_even_if_the_job_never_finishes(namespace, thread_server) -> None:
    """START posts no event for a quick job; the first chunk must still give the stream the job's TTL."""
    from edgegrad.jobs import scripts as jobscripts

    settings = namespace("streamttl")
    server = thread_server(settings)
    with grpc.insecure_channel(server.address) as channel:
        stub = service_pb2_grpc.EdgegradStub(channel)
        job = stub.SubmitJob(service_pb2.SubmitJobRequest(request=gradient_request(NET, X)))
    job_id = job.name.split("/")[1]
    store = WorkerStore(settings, name="ttl-test")
    assert store.start(job_id).kind == "run"
    keys = Keys(settings.key_prefix)
    r = redis.Redis.from_url(settings.redis_url)
    emit = r.register_script(jobscripts.EMIT)
    assert emit(keys=[keys.job(job_id), keys.events(job_id)], args=["s:0", 0, 1, b"chunk"]) == [1, 1]
    assert 0 < r.pttl(keys.events(job_id)) <= r.pttl(keys.job(job_id)) + 1000
    r.close()


def test_the_job_index_holds_only_jobs_whose_records_live(namespace, thread_server) -> None:
    """A finished job leaves the index when its result TTL ends, not after job TTL + result TTL."""
    import time

    settings = namespace("liveindex", job_ttl=600, result_ttl=1)
    server = thread_server(settings)
    keys = Keys(settings.key_prefix)
    r = redis.Redis.from_url(settings.redis_url)
    with grpc.insecure_channel(server.address) as channel:
        stub = service_pb2_grpc.EdgegradStub(channel)
        done = [stub.SubmitJob(service_pb2.SubmitJobRequest(request=gradient_request(NET, X))) for _ in range(3)]
        burst_worker(settings)  # all three succeed; their records now expire after 1 s
        deleted = stub.SubmitJob(service_pb2.SubmitJobRequest(request=gradient_request(NET, X)))
        stub.DeleteJob(service_pb2.DeleteJobRequest(name=deleted.name))
        time.sleep(2.2)
        queued = stub.SubmitJob(service_pb2.SubmitJobRequest(request=gradient_request(NET, X)))  # trims
    members = {m.decode() for m in r.zrange(keys.jobs, 0, -1)}
    assert members == {queued.name.split("/")[1]}, (members, [j.name for j in done])
    assert {m.decode() for m in r.zrange(keys.live, 0, -1)} == members
    assert 590 < r.zscore(keys.live, queued.name.split("/")[1]) / 1000 - time.time() <= 601
    r.close()
