"""Hostile input on the wire: undecodable requests, huge quoted values, and a fuzz of every RPC."""

from __future__ import annotations

import logging
import sys
from collections import Counter

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rpc_fuzz import RPCS, call_raw, check, structured
from svc_helpers import example_network

import edgegrad
from edgegrad.server.cluster import Cluster
from edgegrad.v1 import service_pb2

TOKEN = "fuzz-token"
AUTH = (("authorization", f"Bearer {TOKEN}"),)
NET = example_network(n_inputs=2, n_nodes=5, n_outputs=1, seed=8)


def test_undecodable_requests_are_invalid_argument_without_a_traceback(namespace, thread_server, caplog) -> None:
    server = thread_server(namespace("undecodable"))
    caplog.set_level(logging.DEBUG)
    with grpc.insecure_channel(server.address) as channel:
        for rpc, (client_streams, _, _) in RPCS.items():
            if rpc == "GetCapabilities":
                continue  # an empty message: every byte string that parses at all is one
            garbage = b"\xff\xff\xff\xff"  # a field tag whose varint never ends
            code, details = call_raw(channel, rpc, [garbage] if client_streams else garbage, timeout=10)
            assert code == grpc.StatusCode.INVALID_ARGUMENT, (rpc, code, details)
            assert details.startswith("request: not a serialized edgegrad.v1."), details
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert not loud, [r.getMessage() for r in loud]
    assert any("undecodable" in r.getMessage() and r.levelno == logging.DEBUG for r in caplog.records)


def test_huge_client_values_are_quoted_short_so_the_real_status_arrives(namespace, thread_server) -> None:
    server = thread_server(namespace("quoting"))
    with grpc.insecure_channel(server.address) as channel:
        stub = edgegrad.v1.service_pb2_grpc.EdgegradStub(channel)
        cases = [(stub.GetJob, service_pb2.GetJobRequest(name="x" * 100_000), grpc.StatusCode.INVALID_ARGUMENT),
                 (stub.GetJob, service_pb2.GetJobRequest(name="\U0001F600 " * 40_000), grpc.StatusCode.INVALID_ARGUMENT),
                 (stub.GetNetwork, service_pb2.GetNetworkRequest(hash="a" * 50_000), grpc.StatusCode.NOT_FOUND)]
        for method, request, expected in cases:
            with pytest.raises(grpc.RpcError) as err:
                method(request, timeout=10)
            assert err.value.code() == expected, err.value.details()[:200]
            assert len(err.value.details().encode()) <= 800 and "…" in err.value.details()


def test_bounded_messages_cut_long_runs_and_long_messages() -> None:
    from edgegrad.errors import MAX_MESSAGE_BYTES, MAX_QUOTED_CHARS, InvalidInput, bounded

    assert bounded("name: short 'abc'") == "name: short 'abc'"
    cut = InvalidInput("name: got '" + "z" * 5000 + "'")
    assert cut.message == "name: got '" + "z" * (MAX_QUOTED_CHARS - 1) + "…" and cut.field == "name"
    long = bounded("a b " * 10_000)
    assert len(long.encode()) <= MAX_MESSAGE_BYTES and long.endswith("…")
    assert len(InvalidInput("k" * 10_000 + ": bad").field) <= 4 * MAX_QUOTED_CHARS + 1


# ------------------------------------------------------------------------ the fuzz of every RPC
HISTOGRAM: Counter = Counter()


@pytest.fixture(scope="module")
def fuzz_cluster(namespace):
    """A server process with a token and one real worker: what the fuzz is aimed at."""
    # limits as small as the normal job allows, so that requests over them come up (RESOURCE_EXHAUSTED)
    limits = dict(max_nodes=NET.n_nodes, max_edges=NET.n_edges, max_batch=4)
    with Cluster(namespace("fuzz", auth_token=TOKEN, **limits), workers=1, log=sys.stderr) as cluster:
        with grpc.insecure_channel(cluster.address, options=[("grpc.max_receive_message_length", 64 << 20)]) as ch:
            with edgegrad.Client(cluster.address, token=TOKEN) as client:
                good_hash = client.register(NET)
                job = client.submit(NET, np.zeros((2, NET.n_inputs)))
                job.wait(timeout=60)
            yield cluster, ch, good_hash, job.name


_FUZZ = settings(max_examples=20, deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.parametrize("rpc", sorted(RPCS))
def test_fuzz_random_bytes_as_whole_messages(fuzz_cluster, rpc) -> None:
    _, channel, _, _ = fuzz_cluster
    client_streams = RPCS[rpc][0]
    payloads = st.lists(st.binary(max_size=200), min_size=1, max_size=3) if client_streams else st.binary(max_size=300)

    @_FUZZ
    @given(payload=payloads, auth=st.sampled_from([AUTH, AUTH, AUTH, None]))
    def run(payload, auth) -> None:
        code, details = call_raw(channel, rpc, payload, metadata=auth)
        check(code, details, HISTOGRAM, rpc)

    run()


@pytest.mark.parametrize("rpc", sorted(RPCS))
def test_fuzz_hostile_fields(fuzz_cluster, rpc) -> None:
    _, channel, good_hash, good_name = fuzz_cluster
    examples = 60 if rpc in ("SubmitJob", "Compute", "SubmitJobs", "RegisterNetwork") else 20

    @settings(_FUZZ, max_examples=examples)
    @given(payload=structured(rpc, good_hash, good_name))
    def run(payload) -> None:
        code, details = call_raw(channel, rpc, payload, metadata=AUTH)
        check(code, details, HISTOGRAM, rpc)

    run()


def test_after_the_fuzz_a_normal_job_still_succeeds(fuzz_cluster) -> None:
    cluster, _, _, _ = fuzz_cluster
    x = np.random.default_rng(3).normal(size=(4, NET.n_inputs))
    with edgegrad.Client(cluster.address, token=TOKEN) as client:
        remote = client.gradients(NET, x)
    local = edgegrad.gradients(NET, x)
    np.testing.assert_allclose(remote.edge_grads, local.edge_grads, rtol=1e-12, atol=0)
    assert cluster.server.poll() is None and all(w.poll() is None for w in cluster.workers)
    print(f"\nfuzz: {sum(HISTOGRAM.values())} calls, codes {dict(sorted(HISTOGRAM.items()))}")
