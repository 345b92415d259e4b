"""Small jobs run together (real Redis, server and workers): a worker takes the small jobs waiting in a lane
and runs them as one engine call; each keeps its own record, result, stream and retry.

Jobs are submitted while no worker runs, so that they wait together; the batches a run made are read
back from their Redis keys (``Keys.batch``), which hold the ids each batch rq job took.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest
import redis
from svc_helpers import example_network

import edgegrad
from edgegrad import errors
from edgegrad.client import Client
from edgegrad.jobs.keys import Keys
from edgegrad.jobs.record import rq_job_id
from edgegrad.server.cluster import Cluster
from edgegrad.v1 import job_pb2

pytestmark = pytest.mark.service

NETS = [example_network(n_inputs=3, n_nodes=8 + i % 5, n_outputs=2, density=0.6, seed=40 + i) for i in range(24)]
RNG = np.random.default_rng(3)
XS = [RNG.normal(size=(1 + i % 4, 3)) for i in range(len(NETS))]
TS = [RNG.uniform(size=(x.shape[0], 2)) for x in XS]
FIELDS = ("outputs", "edge_grads", "deltas")


def _bits(a: edgegrad.GradientResult, b: edgegrad.GradientResult) -> bool:
    return a.loss == b.loss and all(getattr(a, f).tobytes() == getattr(b, f).tobytes() for f in FIELDS)


def _close(a: edgegrad.GradientResult, b: edgegrad.GradientResult, rtol: float = 1e-12) -> None:
    for f in FIELDS:
        want = getattr(b, f)
        assert np.abs(getattr(a, f) - want).max(initial=0.0) <= rtol * max(np.abs(want).max(initial=0.0), 1e-300), f
    if b.loss is not None:
        assert abs(a.loss - b.loss) <= rtol * abs(b.loss)


def _batches(settings, tenant: str = "default") -> list[list[str]]:
    """The job ids of every batch run in ``settings``' namespace for ``tenant``."""
    r = redis.Redis.from_url(settings.redis_url)
    try:
        pattern = Keys(settings.key_prefix).for_tenant(tenant).batch("*")
        return [[i.decode() for i in r.lrange(key, 0, -1)] for key in r.scan_iter(match=pattern, count=1000)]
    finally:
        r.close()


def _queued(client: Client, requests: list[dict]) -> list:
    """Jobs recorded (and in their lane) when this returns: ``submit_many``, one unary call, no stream left open
    (a worker process is forked next; gRPC must not be mid-call in this process then)."""
    handles = client.submit_many(requests)
    assert not [h for h in handles if isinstance(h, Exception)]
    return handles


def _job_id(handle) -> str:
    return handle.name.split("/", 1)[1]


@pytest.mark.parametrize("mode", [dict(), dict(loss="mse"), dict(loss="mse", per_example=True),
                                  dict(loss="mse", reduction="sum", norms=True), dict(loss="mse", clip_norm=0.5),
                                  dict(dtype="float32", loss="mse")], ids=str)
def test_batched_jobs_equal_the_same_jobs_run_alone_bit_for_bit(namespace, mode) -> None:
    settings = namespace("lanes")
    with Cluster(settings, workers=0, log=sys.stderr) as cluster, Client(cluster.address, timeout=120) as client:
        kw = [dict(mode, targets=t) if mode.get("loss") else dict(mode) for t in TS]
        handles = _queued(client, [dict(net=net, inputs=x, **k) for net, x, k in zip(NETS, XS, kw)])
        cluster.add_worker()
        batched = [h.result() for h in handles]
        alone = [client.gradients(net, x, **k) for net, x, k in zip(NETS[:6], XS, kw)]  # one at a time
    sizes = sorted(len(b) for b in _batches(settings))
    assert sum(sizes) == len(NETS) + 6 and sizes[-1] > 1          # every job ran once; some ran together
    rtol = 1e-5 if mode.get("dtype") == "float32" else 1e-12
    for i, (got, net, x, k) in enumerate(zip(batched, NETS, XS, kw)):
        if i < 6:
            assert _bits(got, alone[i])                              # its bits do not depend on its batch-mates
        local = edgegrad.gradients_many([net], [x], None if "targets" not in k else [k["targets"]],
                                        **{n: v for n, v in k.items() if n != "targets"})[0]
        assert _bits(got, local)                                     # the population engine's bits exactly
        _close(got, edgegrad.gradients(net, x, **k), rtol)           # and the single-network call's to 1e-12
        if mode.get("norms") or mode.get("clip_norm"):
            assert got.norms is not None and got.norms.tobytes() == local.norms.tobytes()


def test_a_job_that_fails_at_run_time_fails_alone_and_its_batch_mates_succeed(namespace) -> None:
    settings = namespace("lanefail")
    huge = NETS[5].with_parameters(np.full(NETS[5].n_edges, 1e200))
    nets = NETS[:10]
    nets[5] = huge
    xs = [x * 1e150 if i == 5 else x for i, x in enumerate(XS[:10])]
    with pytest.raises(errors.InvalidInput) as local:
        edgegrad.gradients(huge, xs[5], targets=TS[5], loss="mse")
    with Cluster(settings, workers=0, log=sys.stderr) as cluster, Client(cluster.address, timeout=120) as client:
        handles = _queued(client, [dict(net=net, inputs=x, targets=t, loss="mse") for net, x, t in zip(nets, xs, TS)])
        cluster.add_worker()
        for i, h in enumerate(handles):
            if i == 5:
                with pytest.raises(errors.InvalidInput) as remote:
                    h.result()
                assert remote.value.message == local.value.message   # its own message, not nets[5]'s
            else:
                assert _bits(h.result(), edgegrad.gradients_many([nets[i]], [xs[i]], [TS[i]], loss="mse")[0])
    assert [len(b) for b in _batches(settings)] == [10]             # all ten were one batch


def test_two_tenants_jobs_never_share_a_batch(namespace, tmp_path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("alice alice-token\nbob bob-token\n")
    settings = namespace("lanetenants", auth_token_file=str(tokens))
    with Cluster(settings, workers=0, log=sys.stderr) as cluster, \
            Client(cluster.address, timeout=120, token="alice-token") as alice, \
            Client(cluster.address, timeout=120, token="bob-token") as bob:
        mine = _queued(alice, [dict(net=net, inputs=x) for net, x in zip(NETS[:8], XS)])
        theirs = _queued(bob, [dict(net=net, inputs=x) for net, x in zip(NETS[:8], XS)])
        cluster.add_worker()
        for a, b in zip(mine, theirs):
            assert _bits(a.result(), b.result())                     # the same job for each tenant, the same bits
    for tenant, handles in (("alice", mine), ("bob", theirs)):
        batches = _batches(settings, tenant)
        assert sorted(i for b in batches for i in b) == sorted(_job_id(h) for h in handles)


def test_a_worker_killed_mid_batch_its_jobs_complete_once_on_the_other(namespace) -> None:
    settings = namespace("lanekill", batch_max_work=1 << 30, batch_max_jobs=16)
    net = example_network(n_inputs=8, n_nodes=300, n_outputs=2, density=0.5, seed=9)
    x = np.random.default_rng(1).normal(size=(3000, 8))
    t = np.random.default_rng(2).uniform(size=(3000, 2))
    nets = [net.with_parameters(net.weights * (1 + i / 100)) for i in range(32)]
    with Cluster(settings, workers=1, log=sys.stderr) as cluster, Client(cluster.address, timeout=300) as client:
        cluster.wait_for_workers()
        client.gradients(nets[0], x[:10], targets=t[:10], loss="mse")   # the kernels compiled
        handles = _queued(client, [dict(net=n, inputs=x, targets=t, loss="mse", shard_rows=len(x))  # one shard each
                                   for n in nets])
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # kill the worker while it runs a batch
            if any(client.get_job(h.name).state == job_pb2.JOB_STATE_RUNNING for h in handles):
                cluster.kill_worker(0)
                break
            time.sleep(0.005)
        else:
            pytest.fail("the worker never ran a batch")
        cluster.add_worker()
        results = [h.result() for h in handles]
        jobs = [client.get_job(h.name) for h in handles]
    local = edgegrad.gradients_many(nets, x, t, loss="mse")
    for got, want in zip(results, local):
        assert _bits(got, want)                                      # nothing lost, nothing changed
    assert all(j.state == job_pb2.JOB_STATE_SUCCEEDED for j in jobs)
    assert all(c.shards[0].attempt in (1, 2) for c in jobs)           # each job ran again at most once
    assert any(c.shards[0].attempt == 2 for c in jobs)               # the killed batch's jobs did
    taken = [i for b in _batches(settings) for i in b]
    assert sorted(taken) == sorted({*taken}) and {*taken} >= {_job_id(h) for h in handles}


def test_cancelling_one_queued_job_of_a_batch_leaves_the_others(namespace) -> None:
    settings = namespace("lanecancel")
    with Cluster(settings, workers=0, log=sys.stderr) as cluster, Client(cluster.address, timeout=120) as client:
        handles = _queued(client, [dict(net=net, inputs=x) for net, x in zip(NETS[:10], XS)])
        assert handles[3].cancel().state == job_pb2.JOB_STATE_CANCELLED
        cluster.add_worker()
        for i, h in enumerate(handles):
            if i == 3:
                with pytest.raises(errors.Cancelled):
                    h.result()
            else:
                assert _bits(h.result(), edgegrad.gradients_many([NETS[i]], [XS[i]])[0])
        assert client.get_job(handles[3].name).state == job_pb2.JOB_STATE_CANCELLED
    assert [len(b) for b in _batches(settings)] == [10]            # taken with the others, then skipped


def test_with_batching_off_each_small_job_is_an_rq_job_of_its_own(namespace) -> None:
    settings = namespace("lanesoff", batch_max_jobs=1)
    with Cluster(settings, workers=1, log=sys.stderr) as cluster, Client(cluster.address, timeout=120) as client:
        handles = [client.submit(net, x) for net, x in zip(NETS[:4], XS)]
        for h, net, x in zip(handles, NETS, XS):
            assert _bits(h.result(), edgegrad.gradients(net, x))     # the single-network engine, as before
        r = redis.Redis.from_url(settings.redis_url)
        try:
            assert all(r.exists(f"rq:job:{rq_job_id(_job_id(h), 0)}") for h in handles)
        finally:
            r.close()
    assert _batches(settings) == []
