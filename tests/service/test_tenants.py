"""Tenants (spec section 4) against a real server, real workers and real Redis: every RPC on another
tenant's job answers like an unknown job, request ids and networks are per tenant, limits hold."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
import redis
from cli_helpers import edgegrad_cli
from svc_helpers import collect, example_network, gradient_request

import edgegrad
from edgegrad.jobs.keys import Keys
from edgegrad.server.cluster import Cluster
from edgegrad.v1 import job_pb2, service_pb2, service_pb2_grpc
from edgegrad.wire import codec

NET = example_network(seed=8)
X = np.random.default_rng(8).normal(size=(6, NET.n_inputs))
TOKENS = {"alice": "alice-token-1", "bob": "bob-token-1", "default": "plain-token"}
UNKNOWN_JOB = "jobs/" + "0" * 26


def token_file(path) -> str:
    """A token file of the three tenants (with a comment and a one-field default line)."""
    path.write_text("# team tokens\nalice alice-token-1\nbob   bob-token-1  # since May\nplain-token\n")
    return str(path)


class As:
    """A stub whose every call carries one tenant's bearer token."""

    def __init__(self, stub: service_pb2_grpc.EdgegradStub, token: str) -> None:
        self._stub, self._metadata = stub, (("authorization", f"Bearer {token}"),)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._stub, name)
        return lambda request, **kw: method(request, metadata=self._metadata, **kw)


def refused(call, *args) -> grpc.RpcError:
    """The error a call ends with (streams are read to the end)."""
    with pytest.raises(grpc.RpcError) as err:
        reply = call(*args)
        if hasattr(reply, "__iter__") and not isinstance(reply, (bytes, str)):
            list(reply)
    return err.value


@pytest.fixture(scope="module")
def tenant_cluster(namespace, tmp_path_factory) -> Iterator[Cluster]:
    """A server with three tenants' tokens and one worker."""
    settings = namespace("tenants", auth_token_file=token_file(tmp_path_factory.mktemp("tok") / "tokens"))
    with Cluster(settings, workers=1, log=sys.stderr) as c:
        yield c


@pytest.fixture(scope="module")
def stubs(tenant_cluster) -> Iterator[dict[str, As]]:
    """One stub per tenant on the cluster."""
    with grpc.insecure_channel(tenant_cluster.address) as channel:
        stub = service_pb2_grpc.EdgegradStub(channel)
        yield {tenant: As(stub, token) for tenant, token in TOKENS.items()}


def test_every_rpc_on_another_tenants_job_answers_like_an_unknown_job(stubs, tenant_cluster) -> None:
    alice, bob = stubs["alice"], stubs["bob"]
    info = alice.RegisterNetwork(service_pb2.RegisterNetworkRequest(network=codec.network_to_proto(NET)))
    job = alice.SubmitJob(service_pb2.SubmitJobRequest(
        request=gradient_request(NET, X, inline=False), request_id="shared-rid"))
    _, chunks, done = collect(alice.WatchJob(service_pb2.WatchJobRequest(name=job.name)))
    assert done.state == job_pb2.JOB_STATE_SUCCEEDED and chunks
    job_id, unknown_id = job.name.split("/")[1], UNKNOWN_JOB.split("/")[1]

    calls = {
        "GetJob": lambda name: bob.GetJob(service_pb2.GetJobRequest(name=name)),
        "WatchJob": lambda name: list(bob.WatchJob(service_pb2.WatchJobRequest(name=name))),
        "WatchJob after_seq": lambda name: list(bob.WatchJob(service_pb2.WatchJobRequest(name=name, after_seq=1))),
        "CancelJob": lambda name: bob.CancelJob(service_pb2.CancelJobRequest(name=name)),
        "AckJob": lambda name: bob.AckJob(service_pb2.AckJobRequest(name=name, seq=len(chunks))),
        "DeleteJob": lambda name: bob.DeleteJob(service_pb2.DeleteJobRequest(name=name)),
    }
    for rpc, call in calls.items():
        theirs, unknown = refused(call, job.name), refused(call, UNKNOWN_JOB)
        assert theirs.code() == unknown.code() == grpc.StatusCode.NOT_FOUND, rpc
        assert theirs.details().replace(job_id, unknown_id) == unknown.details(), rpc

    listed = {j.name for j in bob.ListJobs(service_pb2.ListJobsRequest(page_size=1000)).jobs}
    assert job.name not in listed
    assert job.name not in {j.name for j in stubs["default"].ListJobs(service_pb2.ListJobsRequest()).jobs}
    assert job.name in {j.name for j in alice.ListJobs(service_pb2.ListJobsRequest()).jobs}

    # networks are shared by hash, but only the tenants that registered one see it
    unknown_hash = "0" * len(info.hash)
    for call in (lambda h: bob.GetNetwork(service_pb2.GetNetworkRequest(hash=h)),
                 lambda h: bob.SubmitJob(service_pb2.SubmitJobRequest(
                     request=gradient_request(None, X, network_hash=h))),
                 lambda h: list(bob.Compute(service_pb2.SubmitJobRequest(
                     request=gradient_request(None, X, network_hash=h))))):
        theirs, unknown = refused(call, info.hash), refused(call, unknown_hash)
        assert theirs.code() == unknown.code() == grpc.StatusCode.NOT_FOUND
        assert theirs.details().replace(info.hash, unknown_hash) == unknown.details()
    many = bob.SubmitJobs(service_pb2.SubmitJobsRequest(requests=[service_pb2.SubmitJobRequest(
        request=gradient_request(NET, X, inline=False))]))
    assert many.results[0].error.code == grpc.StatusCode.NOT_FOUND.value[0]

    # an upload belongs to its tenant
    upload = alice.UploadBatch(iter([service_pb2.UploadPiece(field="inputs", rows=codec.tensor_from_array(X))]))
    theirs = refused(bob.SubmitJob, service_pb2.SubmitJobRequest(
        request=job_pb2.GradientRequest(network_inline=codec.network_to_proto(NET), upload=upload.id)))
    unknown = refused(bob.SubmitJob, service_pb2.SubmitJobRequest(
        request=job_pb2.GradientRequest(network_inline=codec.network_to_proto(NET), upload=unknown_id)))
    assert theirs.code() == unknown.code() == grpc.StatusCode.NOT_FOUND
    assert theirs.details().replace(upload.id, unknown_id) == unknown.details()

    # a request id is per tenant: bob's reuse makes a job of his own, alice's retry finds hers
    bobs = bob.SubmitJob(service_pb2.SubmitJobRequest(request=gradient_request(NET, X * 2), request_id="shared-rid"))
    assert bobs.name != job.name and bobs.request_id == "shared-rid"
    again = alice.SubmitJob(service_pb2.SubmitJobRequest(
        request=gradient_request(NET, X, inline=False), request_id="shared-rid"))
    assert again.name == job.name
    # once bob registers the network himself, he sees it
    bob.RegisterNetwork(service_pb2.RegisterNetworkRequest(network=codec.network_to_proto(NET)))
    assert bob.GetNetwork(service_pb2.GetNetworkRequest(hash=info.hash)).hash == info.hash
    collect(bob.WatchJob(service_pb2.WatchJobRequest(name=bobs.name)))

    # nothing bob did touched alice's job: still there, every chunk still readable
    assert alice.GetJob(service_pb2.GetJobRequest(name=job.name)).state == job_pb2.JOB_STATE_SUCCEEDED
    _, again_chunks, _ = collect(alice.WatchJob(service_pb2.WatchJobRequest(name=job.name)))
    assert [c.SerializeToString() for c in again_chunks] == [c.SerializeToString() for c in chunks]

    # by construction: the job's keys live under alice's prefix, and bob's keys cannot name them
    r = redis.Redis.from_url(tenant_cluster.settings.redis_url)
    try:
        prefix = tenant_cluster.settings.key_prefix
        assert r.exists(Keys(prefix, "alice").job(job_id)) and not r.exists(Keys(prefix, "bob").job(job_id))
        assert not r.exists(Keys(prefix).job(job_id))
        assert all(key.startswith(f"{prefix}:t:alice:".encode())
                   for key in r.scan_iter(match=f"{prefix}:*{job_id}*", count=1000))
    finally:
        r.close()


def test_sdk_and_cli_send_the_tenants_token(stubs, tenant_cluster) -> None:
    address = tenant_cluster.address
    with edgegrad.Client(address, token=TOKENS["alice"]) as client:
        result = client.gradients(NET, X)
        local = edgegrad.gradients(NET, X)
        np.testing.assert_allclose(result.edge_grads, local.edge_grads, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(result.deltas, local.deltas, rtol=1e-9, atol=1e-12)
        handle = client.submit(NET, X)
        handle.wait()
    listed = edgegrad_cli("jobs", "list", "--server", address, EDGEGRAD_TOKEN=TOKENS["alice"])
    assert listed.returncode == 0 and handle.name in listed.stdout
    other = edgegrad_cli("jobs", "list", "--server", address, EDGEGRAD_TOKEN=TOKENS["bob"])
    assert other.returncode == 0 and handle.name not in other.stdout
    shown = edgegrad_cli("jobs", "show", handle.name, "--server", address, EDGEGRAD_TOKEN=TOKENS["bob"])
    assert shown.returncode == 2 and "no job" in shown.stderr
    deleted = edgegrad_cli("jobs", "delete", handle.name, "--server", address, EDGEGRAD_TOKEN=TOKENS["bob"])
    assert deleted.returncode == 2
    assert edgegrad_cli("jobs", "show", handle.name, "--server", address,
                        EDGEGRAD_TOKEN=TOKENS["alice"]).returncode == 0
