"""Raw calls of every RPC (bytes in, status out) and hypothesis strategies of hostile requests."""

from __future__ import annotations

import secrets
from collections import Counter

import grpc
import numpy as np
from hypothesis import strategies as st

from edgegrad.model.activations import ACTIVATION_NAMES
from edgegrad.v1 import job_pb2, network_pb2, service_pb2, tensor_pb2

SERVICE = service_pb2.DESCRIPTOR.services_by_name["Edgegrad"]
#: RPC name -> (client streams, server streams, request class)
RPCS = {m.name: (m.client_streaming, m.server_streaming,
                 getattr(service_pb2, m.input_type.name)) for m in SERVICE.methods}
#: what hostile input may get; RESOURCE_EXHAUSTED only for the service's own stated limits
ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
           grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAUTHENTICATED}


def call_raw(channel: grpc.Channel, rpc: str, payload: bytes | list[bytes], metadata=None,
             timeout: float = 30.0) -> tuple[grpc.StatusCode, str]:
    """Send ``payload`` (bytes; a list for a client stream) as the whole request; (code, details)."""
    client_streams, server_streams, _ = RPCS[rpc]
    path = f"/{SERVICE.full_name}/{rpc}"
    kind = {(False, False): channel.unary_unary, (False, True): channel.unary_stream,
            (True, False): channel.stream_unary, (True, True): channel.stream_stream}[client_streams, server_streams]
    method = kind(path, request_serializer=None, response_deserializer=None)  # bytes both ways
    request = iter(payload) if client_streams else payload
    try:
        reply = method(request, metadata=metadata, timeout=timeout)
        if server_streams:
            for _ in reply:
                pass
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""


def check(code: grpc.StatusCode, details: str, histogram: Counter, what: str) -> None:
    """Count the code; fail on anything hostile input must never get (UNKNOWN, INTERNAL, a trailer overflow)."""
    histogram[code.name] += 1
    assert code in ALLOWED, f"{what}: {code.name}: {details[:300]}"
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        assert "limit" in details, f"{what}: RESOURCE_EXHAUSTED that is no limit of ours: {details[:300]}"
    assert len(details.encode()) <= 1024, f"{what}: a {len(details)}-character message"


_HUGE_TEXT = ["x" * 100_000, "jobs/" + "a" * 100_000, "\U0001F600" * 30_000, "jobs/" + "0" * 26, "",
              "jobs/" + "f" * 25 + "g", "a b " * 20_000]
_names = st.sampled_from(_HUGE_TEXT) | st.text(max_size=40)
ids = st.sampled_from(["x0", "x1", "n0", "n1", "n2", "", "x" * 50_000]) | st.text(max_size=8)
huge = st.sampled_from([0, 1, 2, 3, 2**31, 2**32 + 1, 2**63, 2**64 - 1])


@st.composite
def tensors(draw, columns: int | None = None) -> tensor_pb2.Tensor:
    """A Tensor that is consistent (float64 rows, maybe NaN), or has a wrong dtype, shape or size."""
    if draw(st.booleans()):
        rows = draw(st.integers(0, 6))
        cols = columns if columns is not None and draw(st.booleans()) else draw(st.integers(0, 4))
        values = draw(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=rows * cols,
                               max_size=rows * cols))
        data = np.asarray(values, dtype="<f8").tobytes()
        return tensor_pb2.Tensor(dtype=tensor_pb2.DTYPE_FLOAT64, shape=[rows, cols], data=data)
    return tensor_pb2.Tensor(dtype=draw(st.integers(0, 9)), shape=draw(st.lists(huge, max_size=4)),
                             data=draw(st.binary(max_size=64)))


@st.composite
def networks(draw) -> network_pb2.Network:
    """A columnar network: sometimes valid, often with unknown names, cycles, NaN, bad indices or sizes."""
    inputs = draw(st.lists(ids, max_size=3))
    nodes = draw(st.lists(ids, max_size=7))
    vertices = len(inputs) + len(nodes)
    table = draw(st.lists(st.sampled_from(ACTIVATION_NAMES) | st.text(max_size=6), max_size=3))
    edges = draw(st.integers(0, 16))
    index = st.integers(-1, vertices + 1) if vertices else st.integers(-1, 2)
    src, dst = draw(st.lists(index, min_size=edges, max_size=edges)), draw(st.lists(index, min_size=edges,
                                                                                     max_size=edges))
    if nodes and draw(st.booleans()):  # a cycle through the computed nodes
        first = len(inputs)
        src, dst = src + list(range(first, vertices)), dst + list(range(first + 1, vertices)) + [first]
    net = network_pb2.Network(inputs=inputs, node_ids=nodes, activation_table=table,
                              outputs=draw(st.lists(ids, max_size=2)))
    int_dtype = draw(st.sampled_from(["<i8", "<i4", "<f8"]))
    for field, values in (("src", src), ("dst", dst)):
        getattr(net, field).CopyFrom(tensor_pb2.Tensor(
            dtype={"<i8": tensor_pb2.DTYPE_INT64, "<i4": tensor_pb2.DTYPE_INT32,
                   "<f8": tensor_pb2.DTYPE_FLOAT64}[int_dtype],
            shape=[len(values)], data=np.asarray(values, dtype=int_dtype).tobytes()))
    weights = draw(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=len(src), max_size=len(src)))
    net.weights.CopyFrom(tensor_pb2.Tensor(dtype=tensor_pb2.DTYPE_FLOAT64, shape=[len(weights)],
                                           data=np.asarray(weights, dtype="<f8").tobytes()))
    codes = draw(st.lists(st.integers(0, 255), min_size=len(nodes), max_size=len(nodes)))
    net.activation_index.CopyFrom(tensor_pb2.Tensor(dtype=tensor_pb2.DTYPE_UINT8, shape=[len(codes)],
                                                    data=bytes(codes)))
    biases = draw(st.lists(st.floats(allow_nan=True), min_size=len(nodes), max_size=len(nodes)))
    net.biases.CopyFrom(tensor_pb2.Tensor(dtype=tensor_pb2.DTYPE_FLOAT64, shape=[len(biases)],
                                          data=np.asarray(biases, dtype="<f8").tobytes()))
    if draw(st.integers(0, 5)) == 0:  # one column replaced by a tensor of any kind (wrong dtype, huge shape)
        getattr(net, draw(st.sampled_from(["src", "dst", "weights", "biases", "activation_index"]))).CopyFrom(
            draw(tensors()))
    return net


@st.composite
def gradient_requests(draw, good_hash: str) -> job_pb2.GradientRequest:
    """A GradientRequest with any network, any batch, any options."""
    req = job_pb2.GradientRequest(
        loss=draw(st.sampled_from(["", "mse", "bce", "softmax_ce", "hinge"]) | st.text(max_size=5)),
        reduction=draw(st.sampled_from(["", "mean", "sum", "max"])), per_example=draw(st.booleans()),
        dtype=draw(st.sampled_from(["", "float64", "float32", "int8"]) | st.text(max_size=5)))
    which = draw(st.integers(0, 3))
    if which == 0:
        req.network_inline.CopyFrom(draw(networks()))
    elif which == 1:
        req.network_hash = draw(st.sampled_from([good_hash, "0" * 64]) | _names)
    elif which == 2:
        req.network_hash = good_hash
    if draw(st.integers(0, 4)) == 0:
        req.upload = draw(_names)
    else:
        req.inputs.CopyFrom(draw(tensors(columns=2)))
        if draw(st.booleans()):
            req.targets.CopyFrom(draw(tensors(columns=1)))
    return req


@st.composite
def submit_requests(draw, good_hash: str) -> service_pb2.SubmitJobRequest:
    """A SubmitJobRequest: any request, a fresh or hostile request id, any (huge) shard_rows."""
    rid = draw(st.sampled_from(["", "x" * 10_000, "bad\nid"]) | st.just(secrets.token_hex(8)))
    return service_pb2.SubmitJobRequest(request=draw(gradient_requests(good_hash)), request_id=rid,
                                        shard_rows=draw(huge))


def structured(rpc: str, good_hash: str, good_name: str):
    """A strategy of (serialized request or list of them) for ``rpc``: hostile values in every field
    (``good_name`` is a real job, so positions past its end and repeated cancels and deletes come up)."""
    names = _names | st.just(good_name)
    if rpc in ("SubmitJob", "Compute"):
        return submit_requests(good_hash).map(lambda m: m.SerializeToString())
    if rpc == "SubmitJobs":
        return st.lists(submit_requests(good_hash), max_size=3).map(
            lambda items: service_pb2.SubmitJobsRequest(requests=items).SerializeToString())
    if rpc == "RegisterNetwork":
        return networks().map(lambda n: service_pb2.RegisterNetworkRequest(network=n).SerializeToString())
    if rpc == "GetNetwork":
        return names.map(lambda h: service_pb2.GetNetworkRequest(hash=h).SerializeToString())
    if rpc == "ListJobs":
        return st.builds(service_pb2.ListJobsRequest, page_size=st.sampled_from([0, 1, 10**6, 2**32 - 1]),
                         page_token=names).map(lambda m: m.SerializeToString())
    if rpc == "UploadBatch":
        return st.lists(st.builds(service_pb2.UploadPiece, field=st.sampled_from(["inputs", "targets", "", "x"]),
                                  rows=tensors()), max_size=3).map(lambda ps: [p.SerializeToString() for p in ps])
    if rpc in ("WatchJob", "AckJob"):
        kind = RPCS[rpc][2]
        place = "after_seq" if rpc == "WatchJob" else "seq"
        return st.tuples(names, huge).map(lambda t: kind(name=t[0], **{place: t[1]}).SerializeToString())
    if rpc == "WatchJobs":  # hostile watches, repeated names, and more than a call may carry
        watch = st.tuples(names, huge).map(lambda t: service_pb2.WatchJobRequest(name=t[0], after_seq=t[1]))
        many = st.just([service_pb2.WatchJobRequest(name=f"jobs/{i:026x}") for i in range(1001)])
        return (st.lists(watch, max_size=3) | many).map(
            lambda ws: service_pb2.WatchJobsRequest(watches=ws).SerializeToString())
    if rpc == "GetCapabilities":
        return st.just(b"")
    if rpc == "DeleteJob":  # not the real job: the RPCs fuzzed after this one still find it
        names = _names
    return names.map(lambda n: RPCS[rpc][2](name=n).SerializeToString())  # GetJob, CancelJob, DeleteJob
