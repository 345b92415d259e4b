"""Population jobs with row shards, through the real service (real Redis, server, worker processes): a shard is a
group of networks and a range of rows; loss-mode sums fold in shard order (the same bits on any worker and on
every rerun, within 1e-12 of in-process), per-row fields stream per shard, a killed worker's shard alone reruns."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from svc_helpers import example_network, kill_worker_mid_shard

import edgegrad
from edgegrad.client import AsyncClient, Client
from edgegrad.engine.population import flat_results
from edgegrad.engine.population_results import RowSpan
from edgegrad.server.cluster import Cluster
from edgegrad.v1 import job_pb2

RNG = np.random.default_rng(171)
NETS = [example_network(n_inputs=3, n_nodes=4 + i % 9, n_outputs=2, density=0.5, seed=500 + i) for i in range(11)]
NETS[7] = NETS[3]   # the same object twice
B = 300
X = RNG.normal(size=(B, 3))
T = RNG.uniform(size=(B, 2))
ROWS, PER_SHARD = 128, 4   # 3 row shards (128, 128, 44 rows) of 3 groups (4, 4, 3 networks): 9 shards
CUTS = [0, 128, 256, 300]
C = 0.05

MODES = [
    dict(),                                                      # output mode: per-row fields only
    dict(targets=T, loss="mse"),                                 # sums folded, mean over the whole B
    dict(targets=T, loss="mse", reduction="sum"),
    dict(targets=T, loss="softmax_ce", per_example=True, norms=True),
    dict(targets=T, loss="mse", clip_norm=C),                    # clipped sums fold in shard order
    dict(targets=T, loss="mse", clip_norm=C, per_example=True, reduction="sum"),
    dict(targets=T, loss="mse", norms=True, dtype="float32"),
]


def _ids(mode: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in mode.items() if k != "targets") or "output-mode"


def _in_shard_order(nets: list, x: np.ndarray, cuts: list[int], **mode) -> list[edgegrad.GradientResult]:
    """What the service computes with these row shards, in process: each row range on its own, its per-row fields
    joined, its loss and sums added in shard order."""
    total = np.full(len(nets), x.shape[0], dtype=np.int64)
    targets, rest = mode.get("targets"), {k: v for k, v in mode.items() if k != "targets"}
    parts = [flat_results(nets, x[a:b], None if targets is None else targets[a:b], span=RowSpan(total, a), **rest)
             for a, b in zip(cuts[:-1], cuts[1:])]
    return [_network_of(parts, nets, p, [b - a for a, b in zip(cuts[:-1], cuts[1:])], mode) for p in range(len(nets))]


def _network_of(parts: list, nets: list, p: int, rows: list[int], mode: dict) -> edgegrad.GradientResult:
    k, e, n = nets[p].n_outputs, nets[p].n_edges, nets[p].n_nodes

    def piece(flat: np.ndarray, r: int, per: list[int]) -> np.ndarray:
        return np.split(flat, np.cumsum([r * q for q in per])[:-1])[p]

    outs = np.concatenate([piece(part.outputs, r, [net.n_outputs for net in nets]) for part, r in zip(parts, rows)])
    outputs = outs.reshape(-1, k)
    if mode.get("loss") is None:
        grads = np.concatenate([piece(part.edge_grads, r, [net.n_outputs * net.n_edges for net in nets])
                                for part, r in zip(parts, rows)]).reshape(-1, k, e)
        deltas = np.concatenate([piece(part.deltas, r, [net.n_outputs * net.n_nodes for net in nets])
                                 for part, r in zip(parts, rows)]).reshape(-1, k, n)
        return edgegrad.GradientResult(outputs, None, grads, deltas)
    loss = parts[0].loss[p]
    for part in parts[1:]:
        loss = loss + part.loss[p]
    norms = (np.concatenate([piece(part.norms, r, [1] * len(nets)) for part, r in zip(parts, rows)])
             if parts[0].norms.size else None)
    if mode.get("per_example"):
        grads = np.concatenate([piece(part.edge_grads, r, [net.n_edges for net in nets])
                                for part, r in zip(parts, rows)]).reshape(-1, e)
        deltas = np.concatenate([piece(part.deltas, r, [net.n_nodes for net in nets])
                                 for part, r in zip(parts, rows)]).reshape(-1, n)
        return edgegrad.GradientResult(outputs, float(loss), grads, deltas, norms)
    grads = piece(parts[0].edge_grads, 1, [net.n_edges for net in nets]).copy()
    deltas = piece(parts[0].deltas, 1, [net.n_nodes for net in nets]).copy()
    for part in parts[1:]:
        grads += piece(part.edge_grads, 1, [net.n_edges for net in nets])
        deltas += piece(part.deltas, 1, [net.n_nodes for net in nets])
    return edgegrad.GradientResult(outputs, float(loss), grads, deltas, norms)


def _identical(got: edgegrad.GradientResult, want: edgegrad.GradientResult) -> None:
    for field in ("outputs", "edge_grads", "deltas", "norms"):
        a, b = getattr(got, field), getattr(want, field)
        assert (a is None) == (b is None), field
        if b is not None:
            assert a.shape == b.shape and a.dtype == b.dtype, field
            assert a.tobytes() == b.tobytes(), field
    assert got.loss == want.loss


def _close(got: edgegrad.GradientResult, want: edgegrad.GradientResult, tol: float) -> None:
    """The spec's "equal to 1e-12": every element within tol times the field's largest magnitude."""
    for field in ("outputs", "edge_grads", "deltas", "norms"):
        a, b = getattr(got, field), getattr(want, field)
        assert (a is None) == (b is None), field
        if b is not None:
            assert a.shape == b.shape, field
            scale = max(float(np.abs(b).max(initial=0.0)), 1e-300)
            assert float(np.abs(a.astype(np.float64) - b).max(initial=0.0)) <= tol * scale, field
    if want.loss is not None:
        assert got.loss == pytest.approx(want.loss, rel=tol, abs=tol)


@pytest.mark.parametrize("mode", MODES, ids=_ids)
def test_row_shards_equal_in_process_and_fold_in_shard_order(cluster, mode) -> None:
    local = edgegrad.gradients_many(NETS, X, **mode)
    folded = _in_shard_order(NETS, X, CUTS, **mode)
    with Client(cluster.address, timeout=120) as client:
        job = client.submit_population(NETS, X, shard_networks=PER_SHARD, shard_rows=ROWS, **mode)
        arrived = list(job.results())
        info = job.refresh()
        again = client.gradients_many(NETS, X, shard_networks=PER_SHARD, shard_rows=ROWS, **mode)   # a rerun
    assert sorted(i for i, _ in arrived) == list(range(len(NETS)))   # each network once, whole
    tol = 1e-4 if mode.get("dtype") == "float32" else 1e-12
    for i, got in arrived:
        _identical(got, folded[i])                  # the shard-order fold, bit for bit
        _identical(again[i], got)                   # and again on the rerun, whichever workers ran it
        _close(got, local[i], tol)                  # within 1e-12 of one in-process call
        if mode.get("loss") is None or mode.get("per_example"):
            for field in ("outputs", "edge_grads", "deltas", "norms"):   # per-row fields: the very bits
                if getattr(local[i], field) is not None and mode.get("dtype") is None:
                    assert getattr(got, field).tobytes() == getattr(local[i], field).tobytes(), field
    assert info.state == job_pb2.JOB_STATE_SUCCEEDED and len(info.shards) == 9
    assert [(s.network_start, s.network_stop, s.row_start, s.row_stop) for s in info.shards[:4]] == [
        (0, 4, 0, 128), (0, 4, 128, 256), (0, 4, 256, 300), (4, 8, 0, 128)]
    assert info.rows_done == len(NETS)              # networks whose row shards are all done, each once


def test_a_network_arrives_once_its_groups_row_shards_are_done_on_two_workers(cluster) -> None:
    with Client(cluster.address, timeout=120) as client:
        cluster.wait_for_workers()
        for _ in range(5):   # both workers take shards of one job (retried: the first may take them all)
            job = client.submit_population(NETS, X, targets=T, loss="mse", shard_networks=1, shard_rows=100)
            chunks = list(job.chunks())
            info = job.refresh()
            if len({s.worker for s in info.shards}) == 2:
                break
        assert len({s.worker for s in info.shards}) == 2
    count = len(info.shards)
    assert count == 3 * len(NETS)
    folds = [c for c in chunks if c.shard >= count]                    # one fold per group (network), last
    assert sorted({c.shard - count for c in folds}) == list(range(len(NETS)))
    seq_of_fold = {c.shard - count: c.seq for c in folds}
    for c in chunks:
        if c.shard < count:  # every row shard's chunks come before its group's fold
            assert c.seq < seq_of_fold[info.shards[c.shard].network_start]


def test_per_network_rows_of_different_lengths_and_outputs_many(cluster) -> None:
    each_x = [RNG.normal(size=(40 + 60 * (i % 4), 3)) for i in range(len(NETS))]
    each_t = [RNG.uniform(size=(a.shape[0], 2)) for a in each_x]
    local = edgegrad.gradients_many(NETS, each_x, each_t, loss="mse", clip_norm=C)
    with Client(cluster.address, timeout=120) as client:
        job = client.submit_population(NETS, each_x, each_t, loss="mse", clip_norm=C, shard_rows=50)
        got = job.result()
        info = job.refresh()
        outs = client.outputs_many(NETS, X, shard_rows=64)
    for a, b in zip(got, local):
        _close(a, b, 1e-12)
    for s in info.shards:   # every network of a shard has rows in it
        assert all(s.row_start < len(each_x[p]) for p in range(s.network_start, s.network_stop))
    for a, b in zip(outs, edgegrad.outputs_many(NETS, X)):
        assert a.tobytes() == b.tobytes()


def test_asyncio_row_shards(cluster) -> None:
    import asyncio

    async def main() -> list:
        async with AsyncClient(cluster.address, timeout=120) as client:
            return await client.gradients_many(NETS, X, T, loss="mse", shard_rows=ROWS, shard_networks=PER_SHARD)

    folded = _in_shard_order(NETS, X, CUTS, targets=T, loss="mse")
    for got, want in zip(asyncio.run(main()), folded):
        _identical(got, want)


def test_the_service_cuts_rows_where_a_network_alone_passes_the_time_budget(namespace, thread_server) -> None:
    server = thread_server(namespace("poprowsauto", shard_seconds=1e-5))   # about 2,000 edge-rows a shard
    with Client(server.address, timeout=30) as client:
        job = client.submit_population(NETS, X, targets=T, loss="mse")
        info = job.refresh()
        job.cancel()
        whole = client.submit_population(NETS[:2], X[:100], targets=T[:100], loss="mse")   # too few rows to cut
        assert all(s.row_stop == 0 or s.row_stop == 100 for s in whole.refresh().shards)
        whole.cancel()
    assert info.layout.population.shard_rows > 0 and len(info.shards) > len(NETS)
    assert {(s.network_start, s.row_start) for s in info.shards} == {
        (s.network_start, s.row_start) for s in info.shards}   # no shard twice
    assert max(s.row_stop for s in info.shards) == B


def test_a_killed_workers_row_shard_alone_reruns_and_the_bits_do_not_change(namespace) -> None:
    big = [example_network(n_inputs=8, n_nodes=120, n_outputs=2, density=0.5, seed=700 + i) for i in range(4)]
    x = np.random.default_rng(15).normal(size=(30000, 8))
    t = np.random.default_rng(16).uniform(size=(30000, 2))
    knobs = dict(shard_networks=2, shard_rows=10000)
    with Cluster(namespace("poprowskill"), workers=2, log=sys.stderr) as cluster, \
            Client(cluster.address, timeout=300) as client:
        cluster.wait_for_workers()
        client.gradients_many(big[:1], x[:10], t[:10], loss="mse")  # the kernel compiled in one at least
        handle = client.submit_population(big, x, targets=t, loss="mse", **knobs)
        job, running = kill_worker_mid_shard(cluster, handle)  # worker 0, while it runs a shard
        finished_before = {s.index for s in job.shards if s.state == job_pb2.JOB_STATE_SUCCEEDED}
        arrived = list(handle.results())
        job = handle.refresh()
        alone = client.gradients_many(big, x, t, loss="mse", **knobs)   # the same job on the one worker left
    assert sorted(i for i, _ in arrived) == list(range(len(big)))    # nothing lost, nothing twice
    retried = {s.index for s in job.shards if s.attempt > 1}
    assert retried == set(running)               # the killed worker's shard, and only it, ran again
    assert not retried & finished_before
    assert job.state == job_pb2.JOB_STATE_SUCCEEDED and job.shards_done == 6
    local = edgegrad.gradients_many(big, x, t, loss="mse")
    for i, got in arrived:
        _identical(alone[i], got)                # 2 workers (one killed) and 1 worker: the same bits
        _close(got, local[i], 1e-12)


def test_a_group_whose_folding_worker_died_is_folded_by_the_worker_that_ends_the_job(namespace, thread_server,
                                                                                    monkeypatch) -> None:
    """Group 0's last row shard reports, then its worker dies before folding: the job's last shard folds it."""
    from edgegrad.jobs.worker_store import WorkerStore
    from edgegrad.worker import jobs, population_fold
    from edgegrad.worker import population as worker_population

    settings = namespace("poprowsrefold")
    server = thread_server(settings)
    with Client(server.address, timeout=60) as client:
        handle = client.submit_population(NETS, X, targets=T, loss="mse", shard_networks=PER_SHARD, shard_rows=ROWS)
        job_id = handle.name.split("/")[1]
        jobs.set_store(WorkerStore(settings, name="in-test"))
        folds: list[int] = []
        real_fold = worker_population.fold_group

        def die_once(store, job, layout, group, *args):
            folds.append(group)
            if len(folds) == 1:
                raise SystemExit("killed while folding")
            return real_fold(store, job, layout, group, *args)

        monkeypatch.setattr(worker_population, "fold_group", die_once)
        monkeypatch.setattr(population_fold, "fold_group", die_once)
        try:
            for shard in range(9):  # the rq jobs of the nine shards, one after another
                try:
                    jobs.run_gradient_job(job_id, shard)
                except SystemExit:
                    assert shard == 2                  # group 0's last row shard, after its report
            result = handle.result()
        finally:
            jobs.set_store(None)
    assert folds == [0, 1, 2, 0]                       # group 0 folded again by the worker that ended the job
    for got, want in zip(result, _in_shard_order(NETS, X, CUTS, targets=T, loss="mse")):
        _identical(got, want)
