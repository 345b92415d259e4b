"""The service end to end: a real server process, real worker processes, real Redis."""

from __future__ import annotations

import time

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from svc_helpers import assemble, collect, example_network, get_capabilities, gradient_request, loss_of, served

import edgegrad
from edgegrad.v1 import job_pb2, service_pb2
from edgegrad.wire import codec

NET = example_network(seed=1)
RNG = np.random.default_rng(7)
X = RNG.normal(size=(9, NET.n_inputs))
T = RNG.uniform(size=(9, NET.n_outputs))


@pytest.mark.parametrize("options", [
    {},
    {"loss": "mse"},
    {"loss": "softmax_ce", "reduction": "sum"},
    {"loss": "mse", "per_example": True},
    {"dtype": "float32"},
], ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "output-mode")
def test_compute_equals_the_in_process_engine_bit_for_bit(stub, cluster, options) -> None:
    targets = T if "loss" in options else None
    first, chunks, done = collect(stub.Compute(service_pb2.SubmitJobRequest(
        request=gradient_request(NET, X, targets, **options))))
    assert first.state == job_pb2.JOB_STATE_QUEUED
    assert done.state == job_pb2.JOB_STATE_SUCCEEDED, done.error
    assert [c.seq for c in chunks] == list(range(1, done.layout.chunk_count + 1))
    got = assemble(done.layout, chunks, loss_of(done))
    want = served(NET, X, targets, settings=cluster.settings, **options)
    assert got == want
    assert got.edge_grads.dtype == want.edge_grads.dtype


def test_register_once_then_submit_by_hash(stub, cluster) -> None:
    info = stub.RegisterNetwork(service_pb2.RegisterNetworkRequest(network=codec.network_to_proto(NET)))
    assert info.hash == NET.content_hash and info.edges == NET.n_edges and info.nodes == NET.n_nodes
    assert stub.GetNetwork(service_pb2.GetNetworkRequest(hash=NET.content_hash)) == info
    job = stub.SubmitJob(service_pb2.SubmitJobRequest(request=gradient_request(NET, X, T, "mse", inline=False)))
    assert job.name.startswith("jobs/") and job.network_hash == NET.content_hash
    _, chunks, done = collect(stub.WatchJob(service_pb2.WatchJobRequest(name=job.name)))
    assert assemble(done.layout, chunks, loss_of(done)) == served(NET, X, T, loss="mse", settings=cluster.settings)
    assert stub.GetJob(service_pb2.GetJobRequest(name=job.name)).state == job_pb2.JOB_STATE_SUCCEEDED
    with pytest.raises(grpc.RpcError) as err:
        stub.GetNetwork(service_pb2.GetNetworkRequest(hash="0" * 64))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_large_results_stream_as_many_small_chunks(stub, cluster) -> None:
    net = example_network(n_inputs=8, n_nodes=80, n_outputs=3, density=0.4, seed=3)
    x = np.random.default_rng(3).normal(size=(40, net.n_inputs))
    _, chunks, done = collect(stub.Compute(service_pb2.SubmitJobRequest(request=gradient_request(net, x))))
    assert done.state == job_pb2.JOB_STATE_SUCCEEDED
    assert len(chunks) == done.layout.chunk_count > 20
    assert max(c.ByteSize() for c in chunks) <= cluster.settings.chunk_bytes
    assert assemble(done.layout, chunks, None) == served(net, x, settings=cluster.settings)


def test_a_dropped_stream_resumes_without_gap_or_duplicate(stub, cluster) -> None:
    net = example_network(n_inputs=8, n_nodes=80, n_outputs=3, density=0.4, seed=4)
    x = np.random.default_rng(4).normal(size=(40, net.n_inputs))
    job = stub.SubmitJob(service_pb2.SubmitJobRequest(request=gradient_request(net, x)))
    seen: list[job_pb2.ResultChunk] = []
    call = stub.WatchJob(service_pb2.WatchJobRequest(name=job.name))
    for event in call:
        if event.HasField("chunk"):
            seen.append(event.chunk)
            if len(seen) == 5:
                break
    call.cancel()
    call = stub.WatchJob(service_pb2.WatchJobRequest(name=job.name, after_seq=seen[-1].seq))
    resumed = [e.chunk for e in call if e.HasField("chunk") or e.HasField("done")][:3]
    call.cancel()
    assert resumed[0].seq == seen[-1].seq + 1
    seen += resumed
    _, more, done = collect(stub.WatchJob(service_pb2.WatchJobRequest(name=job.name, after_seq=seen[-1].seq)))
    seen += more
    seqs = [c.seq for c in seen]
    assert seqs == list(range(1, done.layout.chunk_count + 1))
    assert assemble(done.layout, seen, None) == served(net, x, settings=cluster.settings)


def test_submission_is_idempotent_per_request_id(stub) -> None:
    req = service_pb2.SubmitJobRequest(request=gradient_request(NET, X), request_id="rid-" + str(time.time_ns()))
    a = stub.SubmitJob(req)
    b = stub.SubmitJob(req)
    assert a.name == b.name
    other = service_pb2.SubmitJobRequest(request=gradient_request(NET, X * 2), request_id=req.request_id)
    with pytest.raises(grpc.RpcError) as err:
        stub.SubmitJob(other)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    third = stub.SubmitJob(service_pb2.SubmitJobRequest(request=gradient_request(NET, X)))
    assert third.name != a.name


def test_unknown_jobs_are_not_found(stub) -> None:
    name = "jobs/" + "0" * 26
    calls = [(stub.GetJob, service_pb2.GetJobRequest(name=name)),
             (stub.CancelJob, service_pb2.CancelJobRequest(name=name)),
             (stub.DeleteJob, service_pb2.DeleteJobRequest(name=name)),
             (lambda r: list(stub.WatchJob(r)), service_pb2.WatchJobRequest(name=name))]
    for method, request in calls:
        with pytest.raises(grpc.RpcError) as err:
            method(request)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND, method
    with pytest.raises(grpc.RpcError) as err:
        stub.GetJob(service_pb2.GetJobRequest(name="nonsense"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_deleted_jobs_are_gone(stub) -> None:
    job = stub.SubmitJob(service_pb2.SubmitJobRequest(request=gradient_request(NET, X)))
    collect(stub.WatchJob(service_pb2.WatchJobRequest(name=job.name)))
    stub.DeleteJob(service_pb2.DeleteJobRequest(name=job.name))
    with pytest.raises(grpc.RpcError) as err:
        stub.GetJob(service_pb2.GetJobRequest(name=job.name))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_list_jobs_pages_through_every_job_once(stub) -> None:
    names = {stub.SubmitJob(service_pb2.SubmitJobRequest(request=gradient_request(NET, X))).name for _ in range(5)}
    listed, token = [], ""
    while True:
        page = stub.ListJobs(service_pb2.ListJobsRequest(page_size=2, page_token=token))
        assert len(page.jobs) <= 2
        listed += [j.name for j in page.jobs]
        token = page.next_page_token
        if not token:
            break
    assert len(listed) == len(set(listed))
    assert names <= set(listed)


def _bad_requests():
    cyclic = {"inputs": ["x"], "outputs": ["b"], "nodes": [{"id": "a"}, {"id": "b"}],
              "edges": [{"src": "x", "dst": "a", "weight": 1.0}, {"src": "a", "dst": "b", "weight": 1.0},
                        {"src": "b", "dst": "a", "weight": 1.0}]}
    bad_x = X.copy()
    bad_x[1, 0] = np.nan
    yield "shape", gradient_request(NET, np.ones((2, NET.n_inputs + 1))), \
        lambda: edgegrad.gradients(NET, np.ones((2, NET.n_inputs + 1)))
    yield "non-finite", gradient_request(NET, bad_x), lambda: edgegrad.gradients(NET, bad_x)
    yield "loss", gradient_request(NET, X, T, "foo"), lambda: edgegrad.gradients(NET, X, T, loss="foo")
    yield "targets", gradient_request(NET, X, T[:3], "mse"), lambda: edgegrad.gradients(NET, X, T[:3], loss="mse")
    proto = codec.network_to_proto(NET)
    proto.dst.CopyFrom(codec.tensor_from_array(np.r_[NET.dst[:-1], 999].astype(np.int64)))
    req = gradient_request(None, X)
    req.network_inline.CopyFrom(proto)
    yield "edge-index", req, lambda: edgegrad.Network.from_arrays(
        NET.inputs, NET.outputs, NET.node_ids, NET.activations, NET.biases, NET.src, np.r_[NET.dst[:-1], 999],
        NET.weights)
    req = gradient_request(None, [[1.0]])
    req.network_inline.CopyFrom(codec.network_pb2.Network(
        inputs=["x"], outputs=["b"], node_ids=["a", "b"], src=codec.tensor_from_array(np.array([0, 1, 2])),
        dst=codec.tensor_from_array(np.array([1, 2, 1])), weights=codec.tensor_from_array(np.ones(3))))
    yield "cycle", req, lambda: edgegrad.Network.from_dict(cyclic)


@pytest.mark.parametrize("case", list(_bad_requests()), ids=lambda c: c[0])
def test_bad_requests_are_invalid_argument_with_the_cli_message(stub, case) -> None:
    _, request, in_process = case
    with pytest.raises(edgegrad.InvalidInput) as local:
        in_process()
    for call in (lambda: stub.SubmitJob(service_pb2.SubmitJobRequest(request=request)),
                 lambda: list(stub.Compute(service_pb2.SubmitJobRequest(request=request)))):
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details() == local.value.message
        status = rpc_status.from_call(err.value)
        assert status is not None and status.message == local.value.message
        bad = error_details_pb2.BadRequest()
        assert status.details[0].Unpack(bad)
        assert bad.field_violations[0].description == local.value.message
        assert bad.field_violations[0].field == local.value.field


def test_capabilities_state_the_limits(stub, cluster) -> None:
    caps = get_capabilities(stub)
    assert caps.chunk_bytes == cluster.settings.chunk_bytes
    assert "sigmoid" in caps.activations and "mse" in caps.losses and caps.max_edges > 0


def test_a_sigkilled_workers_job_completes_on_another_worker(stub, cluster) -> None:
    net = example_network(n_inputs=16, n_nodes=150, n_outputs=4, density=0.5, seed=5)
    x = np.random.default_rng(5).normal(size=(20000, net.n_inputs))  # about 2 s of work
    t = np.random.default_rng(6).uniform(size=(20000, net.n_outputs))
    job = stub.SubmitJob(service_pb2.SubmitJobRequest(request=gradient_request(net, x, t, "mse")))
    victim = None
    for event in stub.WatchJob(service_pb2.WatchJobRequest(name=job.name)):
        state = event.state if event.HasField("state") else None
        if state is not None and state.state == job_pb2.JOB_STATE_RUNNING and state.worker:
            victim = state.worker
            break
    assert victim is not None
    index = next(i for i in range(len(cluster.workers)) if cluster.worker_name(i) == victim)
    cluster.kill_worker(index)
    cluster.add_worker()  # keep two alive for the other tests
    t0 = time.monotonic()
    _, chunks, done = collect(stub.WatchJob(service_pb2.WatchJobRequest(name=job.name)))
    assert time.monotonic() - t0 < 60
    assert done.state == job_pb2.JOB_STATE_SUCCEEDED, done.error
    assert done.attempt >= 2 and done.worker != victim
    assert [c.seq for c in chunks] == list(range(1, done.layout.chunk_count + 1))
    assert assemble(done.layout, chunks, loss_of(done)) == served(net, x, t, loss="mse", settings=cluster.settings)


def test_watching_a_finished_job_from_its_last_chunk_or_past_it(stub) -> None:
    _, chunks, done = collect(stub.Compute(service_pb2.SubmitJobRequest(request=gradient_request(NET, X))))
    last = done.layout.chunk_count
    _, more, again = collect(stub.WatchJob(service_pb2.WatchJobRequest(name=done.name, after_seq=last), timeout=10))
    assert more == [] and again.state == job_pb2.JOB_STATE_SUCCEEDED  # the final job at once, no hang
    with pytest.raises(grpc.RpcError) as err:
        list(stub.WatchJob(service_pb2.WatchJobRequest(name=done.name, after_seq=last + 1), timeout=10))
    assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert err.value.details().startswith(f"after_seq: {last + 1} is past the job's last chunk ({last})")


def test_a_quick_jobs_stream_is_state_chunks_and_final_job(stub) -> None:
    """Only jobs with real work (or retries) announce their start: a tiny job's stream stays short."""
    events = list(stub.Compute(service_pb2.SubmitJobRequest(request=gradient_request(NET, X))))
    kinds = [e.WhichOneof("event") for e in events if not e.HasField("heartbeat")]
    assert kinds[0] == "state" and kinds[-1] == "done"
    assert set(kinds[1:-1]) == {"chunk"}
    assert events[-1].done.state == job_pb2.JOB_STATE_SUCCEEDED and events[-1].done.start_time.seconds > 0
