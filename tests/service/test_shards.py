"""Sharded jobs through the real service: exact folds, determinism, faults, uploads, buffering."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest
import redis
from svc_helpers import example_network, served

import edgegrad
from edgegrad import errors
from edgegrad.client import Client
from edgegrad.jobs.keys import Keys
from edgegrad.jobs.sharding import WORK_PER_SECOND
from edgegrad.server.cluster import Cluster
from edgegrad.v1 import job_pb2

NET = example_network(n_inputs=4, n_nodes=30, n_outputs=3, density=0.4, seed=31)
SQUASHED = edgegrad.Network.from_arrays(NET.inputs, NET.outputs, NET.node_ids, ["sigmoid"] * NET.n_nodes,
                                        NET.biases, NET.src, NET.dst, NET.weights)
RNG = np.random.default_rng(32)
X = RNG.normal(size=(53, NET.n_inputs))
T = RNG.uniform(size=(53, NET.n_outputs))

MODES = [
    dict(),
    dict(targets=T, loss="mse"),
    dict(targets=T, loss="mse", reduction="sum"),
    dict(targets=T, loss="mse", per_example=True),
    dict(targets=T, loss="bce", per_example=False),
    dict(targets=T, loss="softmax_ce", reduction="sum", per_example=True),
    dict(targets=T, loss="mse", dtype="float32"),
]


def _ids(mode: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in mode.items() if k != "targets") or "output-mode"


def _close(a: np.ndarray, b: np.ndarray, rtol: float) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * float(np.abs(b).max(initial=0.0)))


def _same(a: edgegrad.GradientResult, b: edgegrad.GradientResult) -> bool:
    return a.loss == b.loss and all(getattr(a, f).tobytes() == getattr(b, f).tobytes()
                                    for f in ("outputs", "edge_grads", "deltas"))


@pytest.mark.parametrize("mode", MODES, ids=_ids)
def test_sharded_results_equal_the_in_process_call(cluster, mode) -> None:
    net = SQUASHED if mode.get("loss") == "bce" else NET
    rtol = 1e-5 if mode.get("dtype") == "float32" else 1e-12
    with Client(cluster.address, timeout=60) as client:
        handle = client.submit(net, X, shard_rows=7, **mode)
        remote = handle.result()
        job = handle.refresh()
    local = edgegrad.gradients(net, X, **mode)
    for field in ("outputs", "edge_grads", "deltas"):
        _close(getattr(remote, field), getattr(local, field), rtol)
    if local.loss is None:
        assert remote.loss is None
    else:
        assert remote.loss == pytest.approx(local.loss, rel=rtol)
    assert [(s.index, s.row_start, s.row_stop) for s in job.shards] == \
        [(i, 7 * i, min(53, 7 * i + 7)) for i in range(8)]
    assert all(s.state == job_pb2.JOB_STATE_SUCCEEDED and s.worker and s.attempt == 1 for s in job.shards)
    assert job.rows_done == 53 and job.shards_done == 8


def test_sharded_results_are_bit_identical_across_reruns_and_worker_counts(cluster, namespace) -> None:
    mode = dict(targets=T, loss="mse")
    with Client(cluster.address, timeout=60) as client:  # two workers
        first = client.submit(NET, X, shard_rows=5, **mode).result()
        again = client.submit(NET, X, shard_rows=5, **mode).result()
        outputs_mode = client.submit(NET, X, shard_rows=5).result()
    with Cluster(namespace("oneworker"), workers=1, log=sys.stderr) as single:
        with Client(single.address, timeout=60) as client:
            alone = client.submit(NET, X, shard_rows=5, **mode).result()
            alone_outputs = client.submit(NET, X, shard_rows=5).result()
    assert _same(first, again) and _same(first, alone) and _same(outputs_mode, alone_outputs)


def test_chunks_of_per_example_shards_carry_their_shard_and_rows(cluster) -> None:
    with Client(cluster.address, timeout=60) as client:
        handle = client.submit(NET, X, targets=T, loss="mse", per_example=True, shard_rows=10)
        chunks = list(handle.chunks())
    assert [c.seq for c in chunks] == list(range(1, len(chunks) + 1))
    by_shard: dict[int, set[int]] = {}
    for c in chunks:
        assert 10 * c.shard <= c.row_start < c.row_stop <= min(53, 10 * c.shard + 10)
        by_shard.setdefault(c.shard, set()).add(c.field)
    assert sorted(by_shard) == list(range(6)) and all(len(f) == 3 for f in by_shard.values())


def test_the_service_shards_a_big_batch_on_its_own(namespace) -> None:
    big = example_network(n_inputs=16, n_nodes=150, n_outputs=4, density=0.5, seed=9)
    per_row = big.n_edges + big.n_nodes
    settings = namespace("autoshard", shard_seconds=2500 * per_row / WORK_PER_SECOND)  # ~2500 rows a shard
    with Cluster(settings, workers=2, log=sys.stderr) as c, Client(c.address, timeout=60) as client:
        c.wait_for_workers()
        x = RNG.normal(size=(20000, big.n_inputs))
        handle = client.submit(big, x, targets=RNG.uniform(size=(20000, 4)), loss="mse")
        handle.wait()
        job = handle.refresh()
    assert [s.row_stop - s.row_start for s in job.shards] == [2500] * 8, "the service cuts even shards"
    assert len(job.shards) > 1 and job.state == job_pb2.JOB_STATE_SUCCEEDED
    assert len({s.worker for s in job.shards}) == 2, "both workers take shards of one job"


def test_a_killed_workers_shard_alone_reruns(namespace) -> None:
    big = example_network(n_inputs=16, n_nodes=150, n_outputs=4, density=0.5, seed=5)
    x = np.random.default_rng(5).normal(size=(96000, big.n_inputs))   # 4 shards of about a second each
    t = np.random.default_rng(6).uniform(size=(96000, big.n_outputs))
    with Cluster(namespace("killshard"), workers=2, log=sys.stderr) as cluster, \
            Client(cluster.address, timeout=120) as client:
        cluster.wait_for_workers()
        handle = client.submit(big, x, targets=t, loss="mse", shard_rows=24000)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # kill worker 0 while it runs a shard, after some shards finished
            job = handle.refresh()
            running = [s.index for s in job.shards if s.state == job_pb2.JOB_STATE_RUNNING
                       and s.worker == cluster.worker_name(0)]
            if running and job.shards_done >= 1:
                cluster.kill_worker(0)  # at once: the shard seen running is still mid-way
                break
            assert job.state in (job_pb2.JOB_STATE_QUEUED, job_pb2.JOB_STATE_RUNNING), \
                "the job ended before a worker could be killed"
            time.sleep(0.01)
        else:
            pytest.fail("worker 0 never ran a shard")
        finished_before = {s.index for s in job.shards if s.state == job_pb2.JOB_STATE_SUCCEEDED}
        result = handle.result()
        job = handle.refresh()
    local = edgegrad.gradients(big, x, targets=t, loss="mse")
    for field in ("outputs", "edge_grads", "deltas"):
        _close(getattr(result, field), getattr(local, field), 1e-12)
    attempts = {s.index: s.attempt for s in job.shards}
    retried = {i for i, a in attempts.items() if a > 1}
    assert retried == set(running), attempts         # the killed worker's shard, and only it, ran again
    assert not retried & finished_before               # finished shards are never recomputed
    assert all(s.state == job_pb2.JOB_STATE_SUCCEEDED for s in job.shards)


def test_cancel_mid_job_stops_the_remaining_shards(namespace) -> None:
    big = example_network(n_inputs=16, n_nodes=150, n_outputs=4, density=0.5, seed=7)
    x = np.random.default_rng(7).normal(size=(20000, big.n_inputs))
    with Cluster(namespace("cancelshards"), workers=1, log=sys.stderr) as cluster, \
            Client(cluster.address, timeout=60) as client:
        handle = client.submit(big, x, targets=np.zeros((20000, 4)), loss="mse", shard_rows=1000)
        while handle.refresh().shards_done < 1:
            time.sleep(0.01)
        assert handle.cancel().state == job_pb2.JOB_STATE_CANCELLED   # at once, running shards or not
        final = handle.wait()
        time.sleep(0.5)
        job = handle.refresh()
    assert final.state == job_pb2.JOB_STATE_CANCELLED
    assert job.shards_done < 20 and sum(s.state == job_pb2.JOB_STATE_SUCCEEDED for s in job.shards) < 20
    with pytest.raises(errors.Cancelled):
        handle.result()


def test_inputs_larger_than_a_message_are_uploaded_in_pieces(namespace) -> None:
    settings = namespace("upload", max_message_bytes=256 * 1024)
    x = RNG.normal(size=(20000, NET.n_inputs))   # 640 KB of inputs, 480 KB of targets
    t = RNG.uniform(size=(20000, NET.n_outputs))
    with Cluster(settings, workers=2, log=sys.stderr) as cluster, Client(cluster.address, timeout=60) as client:
        remote = client.gradients(NET, x, targets=t, loss="mse", shard_rows=3000)
        per_example = client.submit(NET, x[:3000], targets=t[:3000], loss="mse", per_example=True).result()
        with pytest.raises(errors.InvalidInput, match=r"targets\[12000\]\[1\]: bce needs targets in \[0, 1\]"):
            bad = t.copy()
            bad[12000, 1] = 2.0
            client.submit(SQUASHED, x, targets=bad, loss="bce")
        assert not redis.Redis.from_url(settings.redis_url).keys(f"{settings.key_prefix}:upload:*:inputs:*"), \
            "an upload's pieces go with the job that used them"
        from edgegrad.client.protocol import prepare

        prepared = prepare(NET, x, t, "mse", "mean", False, "float64", request_id=None)
        upload = client.stub.UploadBatch(prepared.pieces(client._piece_bytes()))
        assert upload.rows == 20000 and upload.target_rows == 20000
        first = client.stub.SubmitJob(prepared.uploaded(upload.id))
        again = prepare(NET, x, t, "mse", "mean", False, "float64", request_id=None).uploaded(upload.id)
        with pytest.raises(Exception, match="already used by " + first.name):
            client.stub.SubmitJob(again)   # an upload serves one job
        assert client.stub.SubmitJob(prepared.uploaded(upload.id)).name == first.name  # the same request: its job
    local = edgegrad.gradients(NET, x, targets=t, loss="mse")
    for field in ("outputs", "edge_grads", "deltas"):
        _close(getattr(remote, field), getattr(local, field), 1e-12)
    assert _same(per_example, served(NET, x[:3000], t[:3000], loss="mse", per_example=True, settings=settings))


def test_a_result_larger_than_the_buffer_waits_for_a_slow_reader(namespace) -> None:
    chunk = 64 * 1024
    settings = namespace("buffer", chunk_bytes=chunk, result_buffer_bytes=4 * chunk)
    x = RNG.normal(size=(3000, NET.n_inputs))   # output mode: 3000 × 3 × (E + N) float64 ≈ 4.5 MB
    r = redis.Redis.from_url(settings.redis_url)
    with Cluster(settings, workers=2, log=sys.stderr) as cluster, Client(cluster.address, timeout=120) as client:
        handle = client.submit(NET, x, shard_rows=500)
        keys = Keys(settings.key_prefix)
        job_id = handle.name.split("/")[1]
        stream = keys.events(job_id)
        peak = staged = keys_seen = 0
        for _ in handle.chunks():
            time.sleep(0.005)  # a slow reader
            # the stream with the keys of its large chunks, and the chunks workers wrote for EMIT to place
            found = list(r.scan_iter(match=f"{keys.job(job_id)}:*", count=1000))
            held = sum(r.memory_usage(key) or 0 for key in found if b":chunk:" in key)
            peak = max(peak, (r.memory_usage(stream) or 0) + held)
            keys_seen = max(keys_seen, held)
            staged = max(staged, sum(r.memory_usage(key) or 0 for key in found if b":staged:" in key))
        result = handle.result()
        with pytest.raises(errors.OutOfRange, match="acknowledged and dropped"):
            client.job(handle.name).result()   # a result larger than the buffer is read once
        small = client.submit(NET, x[:4])  # 3 chunks: within the 4-chunk buffer
        first = small.result()
        assert _same(client.job(small.name).result(), first)  # one that fits stays whole for its TTL
    assert handle.job.layout.chunk_count > 40, "the result must be many times the buffer"
    assert keys_seen > 0, "chunks this large travel as keys of their own (renamed onto the stream by EMIT)"
    assert peak <= 4 * chunk + 64 * 1024, f"Redis held {peak} bytes of a result for a {4 * chunk}-byte buffer"
    # in flight: each of the 2 workers writes at most half the buffer before EMIT places it (or drops it)
    assert staged <= 2 * 2 * (chunk + 1024), f"workers had {staged} bytes of chunks staged in Redis"
    local = edgegrad.gradients(NET, x)
    for field in ("outputs", "edge_grads", "deltas"):
        _close(getattr(result, field), getattr(local, field), 1e-12)


def test_submit_many_answers_each_item_and_a_bad_one_fails_alone(cluster) -> None:
    with Client(cluster.address, timeout=60) as client:
        items = client.submit_many([
            dict(net=NET, inputs=X[:5]),
            dict(net=NET, inputs=X[:5, :2]),                                # wrong shape: refused by the SDK
            dict(net=NET, inputs=X, targets=T, loss="mse", shard_rows=10),
            dict(net=NET, inputs=X, shard_rows=10 ** 9, targets=T, loss="mse", per_example=True),
            dict(net=NET, inputs=X[:2], color="red"),
        ])
        assert isinstance(items[1], errors.InvalidInput) and "inputs: expected shape" in str(items[1])
        assert isinstance(items[4], errors.InvalidInput) and "color" in str(items[4])
        finals = edgegrad.wait_all([items[0], items[2], items[3]])
        assert [f.state for f in finals] == [job_pb2.JOB_STATE_SUCCEEDED] * 3
        assert _same(items[0].result(), served(NET, X[:5], settings=cluster.settings))
        _close(items[2].result().edge_grads, edgegrad.gradients(NET, X, targets=T, loss="mse").edge_grads, 1e-12)


def test_wait_all_takes_submit_many_answers_as_they_are(cluster) -> None:
    """The README's two lines: wait_all on submit_many's list, a bad request's error kept in its place."""
    with Client(cluster.address, timeout=60) as client:
        items = client.submit_many([dict(net=NET, inputs=X[:5]), dict(net=NET, inputs=X[:5, :2]),
                                    dict(net=NET, inputs=X, targets=T, loss="mse", shard_rows=10)])
        finals = edgegrad.wait_all(items)
    assert len(finals) == 3 and finals[1] is items[1] and isinstance(finals[1], errors.InvalidInput)
    assert [f.state for f in (finals[0], finals[2])] == [job_pb2.JOB_STATE_SUCCEEDED] * 2
    assert [f.name for f in (finals[0], finals[2])] == [items[0].name, items[2].name]
    assert edgegrad.wait_all([items[1]]) == [items[1]]


def test_async_wait_all_takes_submit_many_answers_as_they_are(cluster) -> None:
    import asyncio

    async def run() -> tuple[list, list, list]:
        async with edgegrad.AsyncClient(cluster.address, timeout=60) as client:
            items = await client.submit_many([dict(net=NET, inputs=X[:2, :1]), dict(net=NET, inputs=X[:3])])
            only_errors = await client.submit_many([dict(net=NET, inputs=X[:2, :1])])
            return items, await edgegrad.wait_all(items), await edgegrad.wait_all(only_errors)

    items, finals, errors_only = asyncio.run(run())
    assert finals[0] is items[0] and isinstance(finals[0], errors.InvalidInput)
    assert finals[1].state == job_pb2.JOB_STATE_SUCCEEDED and finals[1].name == items[1].name
    assert len(errors_only) == 1 and isinstance(errors_only[0], errors.InvalidInput)


def test_a_job_whose_shard_cannot_fit_a_worker_is_refused_at_submit(namespace, thread_server) -> None:
    server = thread_server(namespace("admission", worker_memory_bytes=100 << 20))
    big = example_network(n_inputs=4, n_nodes=400, n_outputs=400, density=0.5, seed=3)
    with Client(server.address, timeout=30) as client:
        with pytest.raises(errors.ResourceExhausted, match="EDGEGRAD_WORKER_MEMORY_BYTES"):
            client.submit(big, np.zeros((10, 4)))  # one row of the B×K×E Jacobian alone is too big
        with pytest.raises(errors.ResourceExhausted, match="shard_rows: 20000 rows need about"):
            client.submit(NET, np.zeros((30000, 4)), shard_rows=20000)
        assert client.submit(NET, np.zeros((30000, 4)), shard_rows=20000, targets=np.zeros((30000, 3)),
                             loss="mse").name  # loss mode fits the same budget


def test_a_result_over_the_size_limit_is_refused_naming_the_remedy_of_its_mode(namespace, thread_server) -> None:
    server = thread_server(namespace("result-limit", max_result_bytes=20_000))
    x, t = np.zeros((200, 4)), np.zeros((200, 3))
    with Client(server.address, timeout=30) as client:
        with pytest.raises(errors.ResourceExhausted, match=r"\(drop per_example \(--per-example\) for the batch's"
                                                            r" summed gradient \(norms or clip_norm, --norms/--clip-norm,"
                                                            r" give each example's gradient norm or the clipped sum"
                                                            r" without the rows\), or send a smaller batch\)$"):
            client.submit(NET, x, targets=t, loss="mse", per_example=True)
        with pytest.raises(errors.ResourceExhausted, match=r"\(use a loss for one gradient of the batch, or send"):
            client.submit(NET, x)
        assert client.submit(NET, x, targets=t, loss="mse").name  # one summed gradient fits


def test_wait_all_on_async_handles(cluster) -> None:
    import asyncio

    async def run() -> list[job_pb2.Job]:
        async with edgegrad.AsyncClient(cluster.address, timeout=60) as client:
            handles = [await client.submit(NET, X, shard_rows=20) for _ in range(3)]
            handles += [h for h in await client.submit_many([dict(net=NET, inputs=X[:3])])]
            return await edgegrad.wait_all(handles)

    assert [j.state for j in asyncio.run(run())] == [job_pb2.JOB_STATE_SUCCEEDED] * 4


def test_a_worker_that_dies_folding_the_shards_is_replaced_by_the_retry_of_its_shard(namespace, thread_server,
                                                                                      monkeypatch) -> None:
    """The last shard's worker dies after reporting it, before the sums are written: rq's retry folds."""
    from edgegrad.jobs.worker_store import WorkerStore
    from edgegrad.worker import jobs

    settings = namespace("refold")
    server = thread_server(settings)
    with Client(server.address, timeout=60) as client:
        handle = client.submit(NET, X, targets=T, loss="mse", shard_rows=20)
        job_id = handle.name.split("/")[1]
        jobs.set_store(WorkerStore(settings, name="in-test"))
        try:
            folds = []

            def die_once(*args, **kwargs):
                folds.append(args)
                if len(folds) == 1:
                    raise SystemExit("killed while folding")
                return real_fold(*args, **kwargs)

            real_fold = jobs._fold
            monkeypatch.setattr(jobs, "_fold", die_once)
            for shard in range(3):  # the rq jobs of the three shards, one after another
                try:
                    jobs.run_gradient_job(job_id, shard)
                except SystemExit:
                    assert shard == 2
            assert handle.refresh().state == job_pb2.JOB_STATE_RUNNING and handle.refresh().shards_done == 3
            jobs.run_gradient_job(job_id, 2)   # rq retries the abandoned rq job of shard 2
            result = handle.result()
        finally:
            jobs.set_store(None)
    assert len(folds) == 2
    local = edgegrad.gradients(NET, X, targets=T, loss="mse")
    for field in ("outputs", "edge_grads", "deltas"):
        _close(getattr(result, field), getattr(local, field), 1e-12)
    assert result.loss == pytest.approx(local.loss, rel=1e-12)


def test_submit_jobs_answers_a_refused_request_in_its_place(cluster) -> None:
    import grpc
    from google.rpc import code_pb2

    from edgegrad.client.protocol import prepare
    from edgegrad.v1 import service_pb2, service_pb2_grpc

    with Client(cluster.address, timeout=60) as client:
        client.register(NET)
    good = prepare(NET, X[:3], None, None, "mean", False, "float64", request_id=None).inline()
    unknown = prepare(NET, X[:3], None, None, "mean", False, "float64", request_id=None).inline()
    unknown.request.network_hash = "0" * 64
    with grpc.insecure_channel(cluster.address) as channel:
        reply = service_pb2_grpc.EdgegradStub(channel).SubmitJobs(
            service_pb2.SubmitJobsRequest(requests=[good, unknown, good]), timeout=30)
    kinds = [r.WhichOneof("result") for r in reply.results]
    assert kinds == ["job", "error", "job"]
    assert reply.results[1].error.code == code_pb2.NOT_FOUND and "network_hash" in reply.results[1].error.message
    assert reply.results[0].job.name == reply.results[2].job.name  # the same request id: the same job


def test_the_readme_sharded_jobs_example_runs(cluster, monkeypatch) -> None:
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    blocks = re.findall(r"```python\n(.*?)```", (root / "README.md").read_text(encoding="utf-8"), re.S)
    setup = blocks[0].split("with edgegrad.Client")[0]
    sharded = next(block for block in blocks if "edgegrad.wait_all(jobs)" in block)  # the sharded jobs example
    monkeypatch.chdir(root)
    scope: dict = {}
    exec(compile(setup + sharded.replace("localhost:50051", cluster.address), "README.md", "exec"), scope)
    with Client(cluster.address, timeout=30) as client:
        job = client.get_job(scope["job"].name)
    assert [s.row_stop - s.row_start for s in job.shards] == [2, 2]
    assert [f.state for f in scope["finals"]] == [job_pb2.JOB_STATE_SUCCEEDED] * 2


def test_a_watch_whose_chunks_are_acknowledged_under_it_is_told_not_given_a_gap(namespace, thread_server) -> None:
    from edgegrad.jobs.worker_store import WorkerStore
    from edgegrad.v1 import service_pb2

    settings = namespace("undercut", chunk_bytes=64 * 1024)
    server = thread_server(settings)
    x = RNG.normal(size=(2000, NET.n_inputs))  # output mode: ~70 chunks of 64 KiB
    with Client(server.address, timeout=60) as client:
        job = client.submit(NET, x).job
        job_id = job.name.split("/")[1]
        store = WorkerStore(settings, name="in-test")  # play the worker: every chunk on the stream
        started = store.start(job_id)
        from edgegrad.wire import chunking

        chunks = [(c.seq, c.SerializeToString()) for c in chunking.result_chunks(edgegrad.gradients(NET, x), job.layout)]
        for seq, payload in chunks:
            chunk = job_pb2.ResultChunk.FromString(payload)
            chunk.ClearField("seq")
            store.emit(job_id, "s:0", [(seq, chunk.SerializeToString())], 0)
        stream = client.stub.WatchJob(service_pb2.WatchJobRequest(name=job.name), timeout=30)
        got = [e for _, e in zip(range(3), stream)]  # the state and the first chunks
        client._ack(job.name, 40)                       # the consumer, elsewhere, took chunks up to 40
        with pytest.raises(Exception, match="acknowledged and dropped while this watch read"):
            for event in stream:
                got.append(event)
        seqs = [e.chunk.seq for e in got if e.HasField("chunk")]
        assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) < 40 and started.kind == "run"


def test_an_async_submit_then_wait_loop_makes_one_call_per_job(cluster) -> None:
    import asyncio

    import grpc

    calls: list[str] = []

    def note(details) -> None:
        calls.append(details.method.decode() if isinstance(details.method, bytes) else details.method)

    class Unary(grpc.aio.UnaryUnaryClientInterceptor):  # grpc.aio files an interceptor under one kind only
        async def intercept_unary_unary(self, continuation, details, request):
            note(details)
            return await continuation(details, request)

    class Streams(grpc.aio.UnaryStreamClientInterceptor):
        async def intercept_unary_stream(self, continuation, details, request):
            note(details)
            return await continuation(details, request)

    async def run() -> list:
        async with edgegrad.AsyncClient(cluster.address, timeout=60, interceptors=[Unary(), Streams()]) as client:
            await client.register(NET)
            calls.clear()
            handles = [await client.submit(NET, X[:2]) for _ in range(5)]
            return [await h.result() for h in handles]

    results = asyncio.run(run())
    assert all(_same(r, results[0]) for r in results)
    assert [c.rsplit("/", 1)[1] for c in calls] == ["Compute"] * 5, calls


def test_submit_many_registers_a_network_the_server_lost_again(cluster) -> None:
    """A network that expired (or that a Redis restart lost) after this client registered it: each item
    that refers to it is sent again once it is registered again, sync and async alike."""
    import asyncio

    keys = Keys(cluster.settings.key_prefix)
    r = redis.Redis.from_url(cluster.settings.redis_url)
    other = example_network(n_inputs=4, n_nodes=12, n_outputs=3, density=0.5, seed=41)

    def lose(net: edgegrad.Network) -> None:
        assert r.delete(keys.network(net.content_hash), keys.network_meta(net.content_hash)) == 2

    try:
        with Client(cluster.address, timeout=60) as client:
            client.register(NET)
            client.register(other)
            lose(NET)
            items = client.submit_many([dict(net=NET, inputs=X[:4]), dict(net=other, inputs=X[:2]),
                                        dict(net=NET, inputs=X[:4, :1]), dict(net=NET, inputs=X[4:9])])
            assert isinstance(items[2], errors.InvalidInput)
            finals = edgegrad.wait_all([items[0], items[1], items[3]])
            assert [f.state for f in finals] == [job_pb2.JOB_STATE_SUCCEEDED] * 3
            assert _same(items[3].result(), served(NET, X[4:9], settings=cluster.settings))
        lose(NET)

        async def run() -> list[job_pb2.Job]:
            async with edgegrad.AsyncClient(cluster.address, timeout=60) as client:
                await client.register(NET)
                lose(NET)
                return await edgegrad.wait_all(await client.submit_many([dict(net=NET, inputs=X[:3])]))

        assert [j.state for j in asyncio.run(run())] == [job_pb2.JOB_STATE_SUCCEEDED]
    finally:
        r.close()


def test_a_staged_chunk_whose_emit_never_came_expires_soon(namespace, thread_server, monkeypatch) -> None:
    """A worker killed between its SETs of large chunks and their EMIT leaves them for STAGED_TTL, not the
    job's TTL; the retry places its own, and placed chunks live as long as the job."""
    from edgegrad.jobs.worker_store import STAGED_TTL, WorkerStore
    from edgegrad.worker import jobs

    settings = namespace("staged", chunk_bytes=64 * 1024, job_ttl=3600)
    server = thread_server(settings)
    x = RNG.normal(size=(1500, NET.n_inputs))  # output mode: chunks of 64 KiB, each staged; two shards
    r = redis.Redis.from_url(settings.redis_url)
    with Client(server.address, timeout=60) as client:
        handle = client.submit(NET, x, shard_rows=750)
        job_id = handle.name.split("/")[1]
        job_key = Keys(settings.key_prefix).job(job_id)
        store = WorkerStore(settings, name="in-test")
        real_run = store._run

        def killed_after_the_sets(calls, before=()):
            pipe = store.redis.pipeline(transaction=False)
            for command in before:
                pipe.execute_command(*command)
            pipe.execute()
            raise SystemExit("killed between the SETs and EMIT")

        jobs.set_store(store)
        try:
            monkeypatch.setattr(store, "_run", killed_after_the_sets)
            with pytest.raises(SystemExit):
                jobs.run_gradient_job(job_id, 0)
            staged = list(r.scan_iter(match=job_key + ":staged:*"))
            assert staged and all(0 < r.pttl(key) <= STAGED_TTL * 1000 for key in staged)
            monkeypatch.setattr(store, "_run", real_run)
            jobs.run_gradient_job(job_id, 0)   # rq's retry of the shard
            placed = list(r.scan_iter(match=job_key + ":chunk:*"))
            ttls = {r.pttl(key) for key in placed}   # the job still runs (shard 1 to go): its TTL, not the staged one
            assert placed and all(ttl > STAGED_TTL * 1000 for ttl in ttls), ttls
            jobs.run_gradient_job(job_id, 1)
        finally:
            jobs.set_store(None)
        result = handle.result()
    _close(result.edge_grads, edgegrad.gradients(NET, x).edge_grads, 1e-12)


def test_a_reported_shard_abandoned_with_no_retries_left_fails_nothing_and_its_fold_runs(namespace, thread_server,
                                                                                         monkeypatch) -> None:
    """rq gives up on the last shard's rq job (no retries) after the shard had reported and its worker died
    folding: the job does not fail; a fresh rq job folds the shards, once, however many shards are abandoned."""
    from rq.exceptions import AbandonedJobError
    from rq.job import Job
    from rq.serializers import JSONSerializer

    from edgegrad.jobs.record import FOLD_SHARD, rq_job_id
    from edgegrad.jobs.worker_store import WorkerStore
    from edgegrad.worker import jobs
    from edgegrad.worker.runner import end_abandoned_job

    settings = namespace("abandoned", job_retries=0)
    server = thread_server(settings)
    r = redis.Redis.from_url(settings.redis_url)
    with Client(server.address, timeout=60) as client:
        handle = client.submit(NET, X, targets=T, loss="mse", shard_rows=20)
        job_id = handle.name.split("/")[1]
        jobs.set_store(WorkerStore(settings, name="in-test"))
        try:
            real_fold = jobs._fold
            monkeypatch.setattr(jobs, "_fold", lambda *a, **k: (_ for _ in ()).throw(SystemExit("killed folding")))
            for shard in range(3):
                try:
                    jobs.run_gradient_job(job_id, shard)
                except SystemExit:
                    assert shard == 2
            monkeypatch.setattr(jobs, "_fold", real_fold)
            for shard in (2, 0):   # the folding worker's rq job, then another reported one, given up by rq
                rq_job = Job.fetch(rq_job_id(job_id, shard), connection=r, serializer=JSONSerializer)
                assert end_abandoned_job(rq_job, AbandonedJobError, AbandonedJobError("gone"), None)
            assert handle.refresh().state == job_pb2.JOB_STATE_RUNNING
            fold = Job.fetch(rq_job_id(job_id, FOLD_SHARD), connection=r, serializer=JSONSerializer)
            assert r.lrange(f"rq:queue:{settings.queue}", 0, -1).count(fold.id.encode()) == 1
            jobs.run_gradient_job(*fold.args)   # a worker takes the fold job from the queue
            result = handle.result()
        finally:
            jobs.set_store(None)
    local = edgegrad.gradients(NET, X, targets=T, loss="mse")
    for field in ("outputs", "edge_grads", "deltas"):
        _close(getattr(result, field), getattr(local, field), 1e-12)
