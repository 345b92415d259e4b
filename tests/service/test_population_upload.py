"""Populations larger than one gRPC message, through the real service (real Redis, server, worker processes): the
client uploads the topology, values and rows in pieces (UploadBatch) and the job refers to the upload; results equal
in-process ``gradients_many`` bit for bit; bad input in an upload is refused naming its place, with no job; limits
name themselves; an unused upload expires."""

from __future__ import annotations

import asyncio
import sys
import time

import grpc
import numpy as np
import pytest
import redis
from svc_helpers import assert_same_bits, example_network

import edgegrad
from edgegrad import errors
from edgegrad.client import AsyncClient, Client
from edgegrad.model.population import PopulationColumns
from edgegrad.server.cluster import Cluster
from edgegrad.v1 import job_pb2, service_pb2, service_pb2_grpc
from edgegrad.wire.codec import array_from_tensor, tensor_from_array
from edgegrad.wire.columns import networks_to_proto

LIMIT = 256 * 1024          # the server's and the clients' message limit: every population here is larger
RNG = np.random.default_rng(1717)
NETS = [example_network(n_inputs=3, n_nodes=4 + i % 9, n_outputs=2, density=0.5, seed=700 + i) for i in range(29)]
NETS[6] = NETS[1]           # the same object twice
B = 6000                    # shared rows: 144 KB of inputs and 96 KB of targets, over what one message holds
X = RNG.normal(size=(B, 3))
T = RNG.uniform(size=(B, 2))
EACH_X = [RNG.normal(size=(900 + 37 * i, 3)) for i in range(len(NETS))]   # packed: about 730 KB
EACH_T = [RNG.uniform(size=(a.shape[0], 2)) for a in EACH_X]
MANY = [example_network(n_inputs=3, n_nodes=6 + i % 11, n_outputs=2, density=0.6, seed=4000 + i) for i in range(700)]

MODES = [
    dict(inputs=X, targets=T, loss="mse"),
    dict(inputs=X, targets=T, loss="softmax_ce", reduction="sum", per_example=True, dtype="float32"),
    dict(inputs=EACH_X, targets=EACH_T, loss="mse", clip_norm=0.05),
    dict(inputs=EACH_X[:10] + [X[:40]] * (len(NETS) - 10)),               # output mode, rows per network
]



class _Uploads(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor, grpc.StreamUnaryClientInterceptor):
    """Keeps the population requests sent and the fields of every upload's pieces."""

    def __init__(self) -> None:
        self.populations: list[job_pb2.PopulationRequest] = []
        self.uploads: list[list[str]] = []

    def _note(self, request) -> None:
        if isinstance(request, service_pb2.SubmitJobRequest) and request.HasField("population"):
            self.populations.append(request.population)

    def intercept_unary_unary(self, continuation, details, request):
        self._note(request)
        return continuation(details, request)

    def intercept_unary_stream(self, continuation, details, request):
        self._note(request)
        return continuation(details, request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        fields: list[str] = []
        self.uploads.append(fields)

        def noted():
            for piece in request_iterator:
                fields.append(piece.field)
                yield piece

        return continuation(details, noted())


@pytest.fixture(scope="module")
def small(namespace):
    """A server whose messages are at most LIMIT bytes, and two workers."""
    with Cluster(namespace("popupload", max_message_bytes=LIMIT, chunk_bytes=64 * 1024), workers=2,
                 log=sys.stderr) as cluster:
        yield cluster


@pytest.mark.parametrize("mode", MODES, ids=["shared-mse", "shared-per-example-f32", "packed-clip", "packed-outputs"])
def test_a_population_over_the_message_limit_is_uploaded_and_equals_in_process(small, mode) -> None:
    mode = dict(mode)
    x = mode.pop("inputs")
    local = edgegrad.gradients_many(NETS, x, **mode)
    seen = _Uploads()
    with Client(small.address, timeout=120, max_message_bytes=LIMIT, interceptors=[seen]) as client:
        remote = client.gradients_many(NETS, x, shard_networks=4, **mode)
        job = client.submit_population(NETS, x, shard_networks=7, **mode)
        arrived = list(job.results())
    for got, want in zip(remote, local, strict=True):
        assert_same_bits(got, want)
    assert sorted(i for i, _ in arrived) == list(range(len(NETS)))
    for i, got in arrived:
        assert_same_bits(got, local[i])
    assert len(seen.uploads) == 2 and all(p.upload for p in seen.populations)
    rows = "inputs" if not isinstance(x, list) else "inputs_packed"
    assert rows in seen.uploads[0] and "weights" in seen.uploads[0] and "biases" in seen.uploads[0]
    assert seen.uploads[0].count(rows) > 1, "rows go in several pieces"
    assert not seen.populations[0].HasField("inputs") and not seen.populations[0].HasField("inputs_packed")


def test_a_large_topology_goes_in_pieces_and_a_fine_tuning_step_uploads_values_not_networks(small, redis_url) -> None:
    x, t = X[:19], T[:19]
    seen = _Uploads()
    rng = np.random.default_rng(5)
    tuned = [n.with_parameters(n.weights + rng.normal(size=n.n_edges) * 0.01, n.biases - 0.01) for n in MANY]
    with Client(small.address, timeout=120, max_message_bytes=LIMIT, interceptors=[seen]) as client:
        first = client.gradients_many(MANY, x, t, loss="mse")
        step = client.gradients_many(tuned, x, t, loss="mse")
    for got, want in zip(first, edgegrad.gradients_many(MANY, x, t, loss="mse"), strict=True):
        assert_same_bits(got, want)
    for got, want in zip(step, edgegrad.gradients_many(tuned, x, t, loss="mse"), strict=True):
        assert_same_bits(got, want)
    assert seen.uploads[0].count("networks") > 1, "the topology goes in several pieces"
    digest = PopulationColumns.from_networks(MANY).content_hash()
    assert "networks" not in seen.uploads[1] and "weights" in seen.uploads[1]   # the same topologies: values only
    assert seen.populations[1].networks_hash == digest and seen.populations[1].upload
    assert seen.populations[1].ByteSize() < 1000
    store = redis.Redis.from_url(redis_url)
    assert not store.keys(f"{small.settings.key_prefix}:*upload:*"), "a used upload's pieces go with its job"


def test_asyncio_uploads_a_population_over_the_message_limit(small) -> None:
    async def run():
        async with AsyncClient(small.address, timeout=120, max_message_bytes=LIMIT) as client:
            whole = await client.gradients_many(NETS, EACH_X, EACH_T, loss="mse", shard_networks=6)
            job = await client.submit_population(NETS, X, targets=T, loss="softmax_ce")
            arrived = [item async for item in job.results()]
            return whole, arrived

    whole, arrived = asyncio.run(run())
    for got, want in zip(whole, edgegrad.gradients_many(NETS, EACH_X, EACH_T, loss="mse"), strict=True):
        assert_same_bits(got, want)
    local = edgegrad.gradients_many(NETS, X, T, loss="softmax_ce")
    assert sorted(i for i, _ in arrived) == list(range(len(NETS)))
    for i, got in arrived:
        assert_same_bits(got, local[i])


def test_a_client_unaware_of_the_servers_lower_limit_learns_it_and_uploads(small) -> None:
    big = [RNG.normal(size=(3000, 3)) for _ in NETS]    # 2 MB: over the client's own 1 MiB "send without asking"
    with Client(small.address, timeout=120) as client:
        remote = client.outputs_many(NETS, big)
    for got, want in zip(remote, edgegrad.outputs_many(NETS, big), strict=True):
        assert got.tobytes() == want.tobytes()


# ---------------------------------------------------------------- by hand: bad input, limits, expiry
def _pieces(nets, *, inputs=None, packed=None, targets_packed=None, weights=None, biases=None, topology=True):
    cols = PopulationColumns.from_networks(nets)
    out = []
    if topology:
        data = networks_to_proto(cols.topology()).SerializeToString()
        out += [service_pb2.UploadPiece(field="networks", data=data[a:a + 4000]) for a in range(0, len(data), 4000)]
    for name, values in (("weights", cols.weights if weights is None else weights),
                         ("biases", cols.biases if biases is None else biases),
                         ("inputs_packed", packed), ("targets_packed", targets_packed)):
        if values is not None:
            out += [service_pb2.UploadPiece(field=name, rows=tensor_from_array(values[a:a + 100]))
                    for a in range(0, values.size, 100)]
    if inputs is not None:
        out += [service_pb2.UploadPiece(field="inputs", rows=tensor_from_array(inputs[a:a + 50]))
                for a in range(0, inputs.shape[0], 50)]
    return out


def _packed(arrays) -> tuple[np.ndarray, job_pb2.PopulationRequest]:
    counts = np.array([a.shape[0] for a in arrays], dtype=np.int64)
    return (np.concatenate([a.ravel() for a in arrays]),
            job_pb2.PopulationRequest(row_counts=tensor_from_array(counts)))


def _bad_weights():
    w = PopulationColumns.from_networks(NETS).weights.copy()
    w[sum(n.n_edges for n in NETS[:3]) + 2] = np.inf
    return w


def _bad_rows():
    each = [a[:5].copy() for a in EACH_X]
    each[7][3, 1] = np.nan
    return each


def _bad_topology():
    nets = list(NETS)
    cols = PopulationColumns.from_networks(nets)
    msg = networks_to_proto(cols.topology())
    src = array_from_tensor(msg.src, "src").copy()
    src[sum(n.n_edges for n in nets[:5])] = 99   # network 5's first edge leaves the network
    msg.src.CopyFrom(tensor_from_array(src))
    return msg.SerializeToString()


BAD = [
    ("weights", "nets[3].weights[2]: expected a finite number, got inf"),
    ("rows", "inputs[7][3][1]: must be finite, got nan"),
    ("width", "inputs: expected shape (B, 3) with columns"),
    ("topology", "nets[5]"),
    ("mixed", "inputs: given in the request and in the upload"),
]


@pytest.mark.parametrize("case,message", BAD, ids=[c for c, _ in BAD])
def test_bad_input_in_an_upload_is_invalid_argument_naming_its_place_and_makes_no_job(namespace, thread_server,
                                                                                    case, message) -> None:
    server = thread_server(namespace("popupbad"))
    each = _bad_rows() if case == "rows" else [a[:5] for a in EACH_X]
    flat, pop = _packed(each)
    if case == "width":
        pieces = _pieces(NETS, inputs=RNG.normal(size=(60, 4)))
        pop = job_pb2.PopulationRequest()
    else:
        pieces = _pieces(NETS, packed=flat, weights=_bad_weights() if case == "weights" else None)
    if case == "topology":
        data = _bad_topology()
        pieces = [service_pb2.UploadPiece(field="networks", data=data)] + [p for p in pieces if p.field != "networks"]
    with grpc.insecure_channel(server.address) as channel:
        stub = service_pb2_grpc.EdgegradStub(channel)
        pop.upload = stub.UploadBatch(iter(pieces), timeout=30).id
        if case == "mixed":
            pop.inputs.CopyFrom(tensor_from_array(X[:5]))
        with pytest.raises(grpc.RpcError) as info:
            stub.SubmitJob(service_pb2.SubmitJobRequest(population=pop), timeout=30)
        jobs = stub.ListJobs(service_pb2.ListJobsRequest(), timeout=30).jobs
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in info.value.details()
    assert not jobs


def test_limits_name_themselves_and_an_unused_upload_expires(namespace, thread_server, redis_url) -> None:
    uploads = thread_server(namespace("popuplimit", max_upload_bytes=50_000))
    results = thread_server(namespace("popupresult", max_result_bytes=30_000))
    with Client(uploads.address, timeout=30, max_message_bytes=LIMIT) as client:
        with pytest.raises(errors.ResourceExhausted, match=r"upload: more than 50000 bytes, over the limit of 50000"):
            client.submit_population(NETS, X, T, loss="mse")
    with Client(results.address, timeout=30, max_message_bytes=LIMIT) as client:
        with pytest.raises(errors.ResourceExhausted, match=r"results would take \d+ bytes, over the limit of 30000"):
            client.submit_population(NETS, X, T, loss="mse", per_example=True)
        assert not client.stub.ListJobs(service_pb2.ListJobsRequest(), timeout=30).jobs
    settings = namespace("popupexpire", job_ttl=2)
    server = thread_server(settings)
    store = redis.Redis.from_url(redis_url)
    flat, pop = _packed([a[:5] for a in EACH_X])
    with grpc.insecure_channel(server.address) as channel:
        stub = service_pb2_grpc.EdgegradStub(channel)
        upload = stub.UploadBatch(iter(_pieces(NETS, packed=flat)), timeout=30)
        keys = store.keys(f"{settings.key_prefix}:*upload:{upload.id}*")
        assert len(keys) > 5 and all(0 < store.ttl(k) <= 2 for k in keys)
        time.sleep(3)
        assert not store.keys(f"{settings.key_prefix}:*upload:{upload.id}*"), "an unused upload expires"
        pop.upload = upload.id
        with pytest.raises(grpc.RpcError) as info:
            stub.SubmitJob(service_pb2.SubmitJobRequest(population=pop), timeout=30)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert f"population.upload: no upload '{upload.id}'" in info.value.details()


def test_an_upload_serves_one_job_and_a_retried_submit_gets_that_job_and_delete_drops_its_pieces(
        namespace, thread_server, redis_url) -> None:
    settings = namespace("popuponce")
    server = thread_server(settings)
    store = redis.Redis.from_url(redis_url)
    flat, pop = _packed([a[:5] for a in EACH_X])
    with grpc.insecure_channel(server.address) as channel:
        stub = service_pb2_grpc.EdgegradStub(channel)
        pop.upload = stub.UploadBatch(iter(_pieces(NETS, packed=flat)), timeout=30).id
        first = stub.SubmitJob(service_pb2.SubmitJobRequest(population=pop, request_id="r1"), timeout=30)
        again = stub.SubmitJob(service_pb2.SubmitJobRequest(population=pop, request_id="r1"), timeout=30)
        assert again.name == first.name and first.population_size == len(NETS)
        with pytest.raises(grpc.RpcError) as info:
            stub.SubmitJob(service_pb2.SubmitJobRequest(population=pop, request_id="r2"), timeout=30)
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert f"already used by {first.name}" in info.value.details()
        assert store.keys(f"{settings.key_prefix}:*upload:{pop.upload}:*")
        stub.DeleteJob(service_pb2.DeleteJobRequest(name=first.name), timeout=30)
    assert not store.keys(f"{settings.key_prefix}:*upload:{pop.upload}*"), "the job's upload goes with it"


def test_a_population_past_the_inline_size_is_uploaded_even_where_one_message_would_hold_it(cluster,
                                                                                          monkeypatch) -> None:
    from edgegrad.client import population_jobs

    monkeypatch.setattr(population_jobs, "INLINE_POPULATION_BYTES", 100_000)   # 16 MiB in use: kept small here
    seen = _Uploads()
    with Client(cluster.address, timeout=120, interceptors=[seen]) as client:
        small_one = client.gradients_many(NETS, X[:50], T[:50], loss="mse")
        large_one = client.gradients_many(NETS, X, T, loss="mse")
    assert [bool(p.upload) for p in seen.populations] == [False, True] and len(seen.uploads) == 1
    for got, want in zip(small_one + large_one, edgegrad.gradients_many(NETS, X[:50], T[:50], loss="mse")
                         + edgegrad.gradients_many(NETS, X, T, loss="mse"), strict=True):
        assert_same_bits(got, want)
