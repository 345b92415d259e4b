"""Per-example norms and clipped sums through the service: sharded results equal in-process, norms stream by
shard, clipped sums fold in shard order (the same bits on every rerun), bad values are INVALID_ARGUMENT."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from cli_helpers import XOR_PATH, edgegrad_cli, load_result, xor_batch
from svc_helpers import example_network, gradient_request

import edgegrad
from edgegrad.client import Client
from edgegrad.v1 import job_pb2, service_pb2, service_pb2_grpc

NET = example_network(n_inputs=4, n_nodes=30, n_outputs=3, density=0.4, seed=41)
RNG = np.random.default_rng(42)
X = RNG.normal(size=(53, NET.n_inputs))
T = RNG.uniform(size=(53, NET.n_outputs))
C = float(np.median(edgegrad.gradients(NET, X, T, loss="mse", norms=True).norms))

MODES = [
    dict(loss="mse", clip_norm=C),
    dict(loss="mse", reduction="sum", norms=True),
    dict(loss="softmax_ce", clip_norm=C, per_example=True),
    dict(loss="mse", clip_norm=C, dtype="float32"),
]


@pytest.mark.parametrize("mode", MODES, ids=lambda m: ",".join(f"{k}={v}" for k, v in m.items()))
def test_sharded_norms_and_clipped_sums_equal_the_in_process_call(cluster, mode) -> None:
    rtol = 1e-5 if mode.get("dtype") == "float32" else 1e-12
    with Client(cluster.address, timeout=60) as client:
        remote = client.submit(NET, X, targets=T, shard_rows=7, **mode).result()
        fields = {(c.shard, c.field) for c in client.submit(NET, X, targets=T, shard_rows=7, **mode).chunks()}
    local = edgegrad.gradients(NET, X, targets=T, **mode)
    for field in ("outputs", "edge_grads", "deltas", "norms"):
        want, got = getattr(local, field), getattr(remote, field)
        assert got.shape == want.shape and got.dtype == want.dtype, field
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * float(np.abs(want).max()))
    assert remote.loss == pytest.approx(local.loss, rel=rtol)
    # norms stream by shard, like outputs: every one of the 8 shards wrote its own
    assert {s for s, f in fields if f == job_pb2.RESULT_FIELD_NORMS} == set(range(8))


def test_clipped_sums_are_bit_identical_across_reruns(cluster) -> None:
    with Client(cluster.address, timeout=60) as client:  # two workers: shards land anywhere
        runs = [client.submit(NET, X, targets=T, loss="mse", clip_norm=C, shard_rows=5).result() for _ in range(3)]
    for other in runs[1:]:
        for field in ("edge_grads", "deltas", "norms"):
            assert getattr(other, field).tobytes() == getattr(runs[0], field).tobytes()
        assert other.loss == runs[0].loss


@pytest.mark.parametrize("fields, message", [
    (dict(clip_norm=-1.0), "clip_norm: must be finite and > 0, got -1.0"),
    (dict(clip_norm=float("nan")), "clip_norm: must be finite and > 0, got nan"),
    (dict(norms=True, loss=""), "norms: per-example norms and clipping need a loss"),
])
def test_bad_norm_options_are_invalid_argument_and_make_no_job(cluster, fields, message) -> None:
    loss = fields.pop("loss", "mse")
    request = gradient_request(NET, X[:4], T[:4] if loss else None, loss)
    for name, value in fields.items():
        setattr(request, name, value)
    with grpc.insecure_channel(cluster.address) as channel:
        stub = service_pb2_grpc.EdgegradStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.SubmitJob(service_pb2.SubmitJobRequest(request=request), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in info.value.details()


def test_batch_writes_norms_in_a_folder_and_an_npz(cluster, tmp_path) -> None:
    xp, tp, x, t = xor_batch(tmp_path, 300, seed=5)
    net = edgegrad.Network.load(XOR_PATH)
    local = edgegrad.gradients(net, x, targets=t, loss="bce", clip_norm=0.1)
    for out in (tmp_path / "r", tmp_path / "r.npz"):
        run = edgegrad_cli("batch", XOR_PATH, "--inputs", xp, "--targets", tp, "--loss", "bce", "--clip-norm", "0.1",
                           "--shard-rows", "100", "--out", str(out), "--server", cluster.address)
        assert run.returncode == 0, run.stderr
        result = load_result(out)
        np.testing.assert_allclose(result["norms"], local.norms, rtol=1e-12)
        np.testing.assert_allclose(result["edge_grads"], local.edge_grads, rtol=1e-12)
