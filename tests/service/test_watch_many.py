"""WatchJobs (many watches in one stream) and the blocking client's shared watch of a submit loop."""

from __future__ import annotations

import collections
import math
import threading
import time

import grpc
import numpy as np
import pytest
from svc_helpers import example_network, gradient_request, served

from edgegrad import errors
from edgegrad.client import Client
from edgegrad.client import grouping as client_group
from edgegrad.client.base import STREAMS_AHEAD
from edgegrad.client.protocol import WatchState
from edgegrad.jobs.worker_store import STAGE_BYTES
from edgegrad.v1 import service_pb2, service_pb2_grpc
from edgegrad.wire.chunking import result_bytes

NET = example_network(seed=97)
X = np.random.default_rng(8).normal(size=(40, NET.n_inputs))


@pytest.fixture(scope="module")
def client(cluster):
    with Client(cluster.address, timeout=120) as c:
        yield c


def _events(stub, watches) -> dict[str, list]:
    """name -> the JobsEvents of a WatchJobs call, in order."""
    got: dict[str, list] = collections.defaultdict(list)
    for message in stub.WatchJobs(service_pb2.WatchJobsRequest(watches=watches), timeout=60):
        got[message.name].append(message)
    return got


def test_every_job_gets_its_own_events_with_no_gap_and_an_unknown_one_an_error(client, stub, cluster) -> None:
    handles = [client.submit(NET, X[i:i + 2]) for i in range(6)]
    for handle in handles:
        handle.wait()
    watches = [service_pb2.WatchJobRequest(name=h.name) for h in handles]
    watches.append(service_pb2.WatchJobRequest(name="jobs/" + "0" * 26))  # no such job
    got = _events(stub, watches)
    for i, handle in enumerate(handles):
        state = WatchState(handle.name)
        for message in got[handle.name]:
            assert not message.HasField("error")
            state.feed(message.event)
        assert state.done
        assert state.result() == served(NET, X[i:i + 2], settings=cluster.settings)
    missing = got["jobs/" + "0" * 26]
    assert len(missing) == 1 and missing[0].error.code == grpc.StatusCode.NOT_FOUND.value[0]


def test_a_watch_resumes_after_its_seq_and_a_seq_past_the_end_is_an_error_for_that_job_alone(client, stub) -> None:
    a, b = client.submit(NET, X[:3]), client.submit(NET, X[3:6])
    a.wait(), b.wait()
    chunks = a.refresh().layout.chunk_count
    got = _events(stub, [service_pb2.WatchJobRequest(name=a.name, after_seq=chunks - 1),
                         service_pb2.WatchJobRequest(name=b.name, after_seq=chunks + 5)])
    seqs = [m.event.chunk.seq for m in got[a.name] if m.event.WhichOneof("event") == "chunk"]
    assert seqs == [chunks]
    assert got[a.name][-1].event.WhichOneof("event") == "done"
    assert [m.error.code for m in got[b.name]] == [grpc.StatusCode.OUT_OF_RANGE.value[0]]


def test_chunks_kept_apart_from_their_stream_entries_are_watched_too(client, stub, cluster) -> None:
    """A job small enough for a shared watch may still have a chunk of STAGE_BYTES or more, whose data a
    worker writes to a key of its own instead of the stream entry."""
    x = np.random.default_rng(9).normal(size=(60, NET.n_inputs))
    handle = client.submit(NET, x)
    handle.wait()
    layout = handle.refresh().layout
    assert result_bytes(layout) <= client_group.GROUP_RESULT_BYTES
    assert max(math.prod(f.shape) for f in layout.fields) * 8 >= STAGE_BYTES
    got = _events(stub, [service_pb2.WatchJobRequest(name=handle.name)])
    state = WatchState(handle.name)
    for message in got[handle.name]:
        assert not message.HasField("error"), message.error
        state.feed(message.event)
    assert state.done and state.result() == served(NET, x, settings=cluster.settings)


def test_bad_requests_are_refused_whole(stub) -> None:
    with pytest.raises(grpc.RpcError) as info:
        _events(stub, [service_pb2.WatchJobRequest(name="not a job")])
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    name = "jobs/" + "1" * 26
    with pytest.raises(grpc.RpcError) as info:
        _events(stub, [service_pb2.WatchJobRequest(name=name)] * 2)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_submit_loop_beyond_the_streams_ahead_waits_through_shared_watches(client, cluster, monkeypatch) -> None:
    calls: collections.Counter = collections.Counter()
    # the handles' own watches go through client.streams, not the plain stub
    for owner, rpc in ((client.stub, "WatchJob"), (client.stub, "WatchJobs"), (client.streams, "WatchJob")):
        original = getattr(owner, rpc)

        def counted(*args, _rpc=rpc, _original=original, **kwargs):
            calls[_rpc] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(owner, rpc, counted)
    n = STREAMS_AHEAD + 30
    handles = [client.submit(NET, X[i % 40:i % 40 + 1]) for i in range(n)]
    results = [h.result() for h in handles]
    assert all(r == served(NET, X[i % 40:i % 40 + 1], settings=cluster.settings) for i, r in enumerate(results))
    assert calls["WatchJobs"] == 1 and calls["WatchJob"] == 0   # one shared watch, never one per job


def test_a_job_sent_alone_in_a_loop_waits_for_the_loops_answers_and_shares_their_watch(client, cluster,
                                                                                      monkeypatch) -> None:
    """A pause in a loop (longer than LOOP_GAP_SECONDS) sends that job alone by SubmitJob; waiting on it while
    the loop's later submissions are still unanswered first lets them be answered, so one shared watch takes
    them all (before, it opened a group of the jobs answered so far, and the rest opened another: the flake a
    slow CI machine showed)."""
    calls: collections.Counter = collections.Counter()
    for owner, rpc in ((client.stub, "WatchJobs"), (client.streams, "WatchJob")):
        original = getattr(owner, rpc)

        def counted(*args, _rpc=rpc, _original=original, **kwargs):
            calls[_rpc] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(owner, rpc, counted)
    submit_jobs = client._submit_jobs

    def slow_answers(*args, **kwargs):
        time.sleep(0.5)   # the loop's batch is still on the wire when the lone job is waited on
        return submit_jobs(*args, **kwargs)

    monkeypatch.setattr(client, "_submit_jobs", slow_answers)
    for _ in range(STREAMS_AHEAD):  # the streams opened at submit are all in use: the jobs go by SubmitJob(s)
        client.streams_ahead.try_take()
    try:
        client.flush()
        time.sleep(0.2)   # a pause: the next submission is not part of a loop
        alone = client.submit(NET, X[0:1])
        assert alone._pending is None and alone.name   # sent and answered on its own
        loop = [client.submit(NET, X[i:i + 1]) for i in range(1, 12)]
        assert all(h._pending is not None for h in loop)
        results = [h.result() for h in [alone, *loop]]
    finally:
        for _ in range(STREAMS_AHEAD):
            client.streams_ahead.give_back()
    assert all(r == served(NET, X[i:i + 1], settings=cluster.settings) for i, r in enumerate(results))
    assert calls["WatchJobs"] == 1 and calls["WatchJob"] == 0


def test_a_job_the_shared_watch_cannot_finish_goes_on_by_its_own_watch(client, cluster, monkeypatch) -> None:
    monkeypatch.setattr(client_group, "GROUP_SIZE", 4)
    for _ in range(STREAMS_AHEAD):  # fill the streams opened at submit, so the next ones go by SubmitJob
        client.streams_ahead.try_take()
    try:
        handles = [client.submit(NET, X[i:i + 1]) for i in range(5)]
        handles[2].delete()  # its watch in the group ends with NOT_FOUND: its own watch reports it
        assert handles[0].result() == served(NET, X[0:1], settings=cluster.settings)
        assert handles[1].result() == served(NET, X[1:2], settings=cluster.settings)
        with pytest.raises(errors.NotFound):
            handles[2].wait()
        assert handles[3].result() == served(NET, X[3:4], settings=cluster.settings)
        assert handles[4].result() == served(NET, X[4:5], settings=cluster.settings)  # outside the first group of 4
    finally:
        for _ in range(STREAMS_AHEAD):
            client.streams_ahead.give_back()


def test_a_server_that_stops_ends_open_watches_unavailable(namespace, thread_server) -> None:
    """WatchJob and WatchJobs both end with UNAVAILABLE (resume elsewhere) as soon as their server shuts down,
    not at their next heartbeat or when the grace period runs out."""
    server = thread_server(namespace("watch-stop", heartbeat_seconds=60.0, shutdown_grace_seconds=60.0))
    with grpc.insecure_channel(server.address) as channel:
        stub = service_pb2_grpc.EdgegradStub(channel)
        job = stub.SubmitJob(service_pb2.SubmitJobRequest(request=gradient_request(NET, X[:2])))
        one = stub.WatchJob(service_pb2.WatchJobRequest(name=job.name), timeout=60)
        many = stub.WatchJobs(service_pb2.WatchJobsRequest(watches=[service_pb2.WatchJobRequest(name=job.name)]),
                              timeout=60)
        assert next(one).WhichOneof("event") == "state" and next(many).event.WhichOneof("event") == "state"
        stopping = threading.Thread(target=server.stop)  # no workers: the job stays queued, its streams quiet
        began = time.monotonic()
        stopping.start()
        for stream in (one, many):
            with pytest.raises(grpc.RpcError) as info:
                list(stream)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value
        assert time.monotonic() - began < 20
        stopping.join(30)
