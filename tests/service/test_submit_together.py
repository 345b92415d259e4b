"""Submissions together and a small job's Redis record (real Redis, in-process servers, a burst worker).

A SubmitJobs call's items are recorded by one CREATE call, each keeping its own request id, limit and refusal;
a small request lives in its job record (field ``spec``), a large one in a key of its own; DONE writes a job's
chunks and ends it as EMIT then FINISH would, and refuses a cancelled or deleted job as they do.
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import redis
from svc_helpers import burst_worker, example_network, gradient_request

from edgegrad.jobs.keys import Keys
from edgegrad.jobs.stream import stream_entry
from edgegrad.jobs.worker_store import WorkerStore
from edgegrad.v1 import job_pb2, service_pb2, service_pb2_grpc
from edgegrad.wire import codec

pytestmark = pytest.mark.service

NET = example_network(n_inputs=3, n_nodes=8, n_outputs=1, density=0.6, seed=5)
X = np.random.default_rng(5).normal(size=(1, 3))


def _stub(server) -> tuple[grpc.Channel, service_pb2_grpc.EdgegradStub]:
    channel = grpc.insecure_channel(server.address)
    stub = service_pb2_grpc.EdgegradStub(channel)
    stub.RegisterNetwork(service_pb2.RegisterNetworkRequest(network=codec.network_to_proto(NET)))
    return channel, stub


def _count_creates(server) -> list[int]:
    """The number of jobs of each CREATE call the server makes from now on."""
    store, calls = server.app.service.store, []
    script = store._scripts["CREATE"]

    async def counted(keys, args):
        calls.append(int(args[6]))
        return await script(keys=keys, args=args)
    store._scripts["CREATE"] = counted  # the tenants' stores share the scripts
    return calls


def _item(scale: float = 1.0, request_id: str = "", rows: int = 1) -> service_pb2.SubmitJobRequest:
    x = np.repeat(X, rows, axis=0) * scale
    return service_pb2.SubmitJobRequest(request=gradient_request(NET, x, inline=False), request_id=request_id)


def test_a_submitjobs_call_is_one_create_call_and_each_item_keeps_its_request_id_and_limit(
        namespace, thread_server) -> None:
    settings = namespace("together", tenant_max_jobs=4)
    server = thread_server(settings)
    calls = _count_creates(server)
    channel, stub = _stub(server)
    with channel:
        items = [_item(1, "a"), _item(1, "a"), _item(2, "a"), _item(3, "b"), _item(4), _item(5), _item(6, "c"),
                 _item(7, "d")]
        results = stub.SubmitJobs(service_pb2.SubmitJobsRequest(requests=items)).results
        assert calls == [len(items)]                                    # one script call for all of them
        codes = {c.value[0]: c for c in grpc.StatusCode}
        names = [r.job.name if r.HasField("job") else codes[r.error.code] for r in results]
        assert names[1] == names[0]                                     # the same request again: the same job
        assert names[2] == grpc.StatusCode.ALREADY_EXISTS               # its id for another request: refused
        assert len({names[0], names[3], names[4], names[5]}) == 4       # four jobs: the tenant's limit
        assert names[6:] == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 2    # past it, refused one by one
        r = redis.Redis.from_url(settings.redis_url)
        try:
            keys = Keys(settings.key_prefix)
            assert r.zcard(keys.inflight) == r.zcard(keys.live) == r.zcard(keys.jobs) == 4
            assert r.exists(keys.request("a"), keys.request("b")) == 2
            assert r.exists(keys.request("c"), keys.request("d")) == 0   # the refused hold no claim
            assert int(r.hget(keys.held, "total")) == 4 * int(r.hget(keys.held, results[0].job.name[5:]))
        finally:
            r.close()
        burst_worker(settings)                                          # the four run (one batch)
        for name in {names[0], names[3], names[4], names[5]}:
            job = stub.GetJob(service_pb2.GetJobRequest(name=name))
            assert job.state == job_pb2.JOB_STATE_SUCCEEDED
        again = stub.SubmitJobs(service_pb2.SubmitJobsRequest(requests=[_item(8), _item(9)])).results
        assert all(r.HasField("job") for r in again) and calls[-1] == 2  # nothing in flight: room again


def test_a_small_request_lives_in_its_record_and_a_large_one_in_its_own_key(namespace, thread_server) -> None:
    settings = namespace("specrecord")
    server = thread_server(settings)
    channel, stub = _stub(server)
    keys = Keys(settings.key_prefix)
    r = redis.Redis.from_url(settings.redis_url)
    try:
        small, large, cancelled = [stub.SubmitJob(item) for item in (_item(1), _item(2, rows=400), _item(3))]
        ids = [job.name[5:] for job in (small, large, cancelled)]
        assert r.hget(keys.job(ids[0]), "spec") and not r.exists(keys.spec(ids[0]))
        assert r.hget(keys.job(ids[1]), "spec") is None and r.exists(keys.spec(ids[1]))
        stub.CancelJob(service_pb2.CancelJobRequest(name=cancelled.name))
        assert r.hget(keys.job(ids[2]), "spec") == b""                  # ended: the request is dropped
        burst_worker(settings)
        for job_id in ids[:2]:
            assert stub.GetJob(service_pb2.GetJobRequest(name=f"jobs/{job_id}")).state == job_pb2.JOB_STATE_SUCCEEDED
            assert r.hget(keys.job(job_id), "spec") in (None, b"") and not r.exists(keys.spec(job_id))
            (entry_id, fields), = r.xrevrange(keys.events(job_id), count=1)
            done = stream_entry(entry_id, fields)
            assert done.kind == "done" and b"spec" not in done.fields    # the final event carries no request
            assert done.job().state == job_pb2.JOB_STATE_SUCCEEDED
    finally:
        r.close()
        channel.close()


def test_a_refused_large_request_leaves_no_key_behind(namespace, thread_server) -> None:
    """A large request's key is written ahead of the CREATE; a job not made (its request id taken, the tenant at
    its limit) has it deleted: the only request keys are those of jobs that exist."""
    settings = namespace("specrefused", tenant_max_jobs=2)
    server = thread_server(settings)
    channel, stub = _stub(server)
    keys = Keys(settings.key_prefix)
    r = redis.Redis.from_url(settings.redis_url)
    try:
        first = stub.SubmitJob(_item(1, request_id="big-1", rows=400))
        assert stub.SubmitJob(_item(1, request_id="big-1", rows=400)).name == first.name    # a retry: the same job
        with pytest.raises(grpc.RpcError) as taken:
            stub.SubmitJob(_item(2, request_id="big-1", rows=400))                           # its id, another request
        assert taken.value.code() == grpc.StatusCode.ALREADY_EXISTS
        stub.SubmitJob(_item(3, rows=400))
        with pytest.raises(grpc.RpcError) as full:
            stub.SubmitJob(_item(4, rows=400))                                                 # over tenant_max_jobs
        assert full.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        specs = {key.decode() for key in r.scan_iter(match=keys.spec("*"), count=1000)}
        jobs = {job.name[5:] for job in stub.ListJobs(service_pb2.ListJobsRequest(page_size=100)).jobs}
        assert len(jobs) == 2 and specs == {keys.spec(job_id) for job_id in jobs}
    finally:
        r.close()
        channel.close()


def test_done_ends_a_job_as_emit_and_finish_do_and_refuses_a_cancelled_or_deleted_one(namespace, thread_server) -> None:
    settings = namespace("donescript", batch_max_jobs=1)
    server = thread_server(settings)
    channel, stub = _stub(server)
    keys = Keys(settings.key_prefix)
    store = WorkerStore(settings, name="w")
    r = redis.Redis.from_url(settings.redis_url)
    try:
        jobs = [stub.SubmitJob(_item(i + 1)) for i in range(4)]
        ids = [job.name[5:] for job in jobs]
        for job_id in ids:
            assert store.start(job_id).kind == "run"
        stub.CancelJob(service_pb2.CancelJobRequest(name=jobs[1].name))
        stub.DeleteJob(service_pb2.DeleteJobRequest(name=jobs[2].name))
        count = jobs[0].layout.chunk_count
        chunks = [(n, b"chunk %d" % n) for n in range(1, count + 1)]
        fields = {"rows_done": "1", "shards_done": "1", "s:0": f"3|1|{count}|w"}
        parts = [store.done_part(ids[0], chunks, count, fields), store.done_part(ids[1], chunks, count, fields),
                 store.done_part(ids[2], chunks, count, fields), store.done_part(ids[3], chunks[1:], count, fields)]
        replies = store.call(store.done_call(parts))[0]
        assert [int(code) for code, _ in replies] == [1, -1, -2, -5]
        assert replies[0][1] == b"3" and replies[1][1] == b"was 5" and replies[2][1] is None and replies[3][1] == b"4"
        done = stub.GetJob(service_pb2.GetJobRequest(name=jobs[0].name))
        assert done.state == job_pb2.JOB_STATE_SUCCEEDED and done.chunks_done == count and done.shards[0].chunks_done == count
        entries = [stream_entry(i, f) for i, f in r.xrange(keys.events(ids[0]))]
        assert [e.seq for e in entries if e.kind == "chunk"] == list(range(1, count + 1))
        assert [e.data for e in entries if e.kind == "chunk"] == [c for _, c in chunks]
        record = r.hgetall(keys.job(ids[0]))
        assert entries[-1].kind == "done" and dict(entries[-1].fields) == {
            b"k": b"d", **{k: v for k, v in record.items() if k != b"spec"}}   # the snapshot is the record now
        assert 0 < r.ttl(keys.job(ids[0])) <= settings.result_ttl and 0 < r.ttl(keys.events(ids[0])) <= settings.result_ttl
        assert r.zscore(keys.inflight, ids[0]) is None and r.zscore(keys.live, ids[0]) is not None
        assert not any(e.kind == "chunk" for e in (stream_entry(i, f) for i, f in r.xrange(keys.events(ids[1]))))
        failed = stub.GetJob(service_pb2.GetJobRequest(name=jobs[3].name))   # a chunk missing before those given
        assert failed.state == job_pb2.JOB_STATE_FAILED and failed.error.message == "result chunks missing"
        assert r.zcount(keys.inflight, "-inf", "+inf") == 0
    finally:
        r.close()
        store.redis.close()
        channel.close()
