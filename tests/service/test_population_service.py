"""Population jobs through the real service (real Redis, server, worker processes): one job per population,
shards of networks, results equal in-process ``gradients_many`` bit for bit, faults, cancel, bad input,
asyncio, and how networks travel (inline once, then by hash, then as new weights)."""

from __future__ import annotations

import asyncio
import sys
import time

import grpc
import numpy as np
import pytest
from cli_helpers import edgegrad_cli
from redis_process import RedisProcess
from svc_helpers import assert_same_bits, example_network, kill_worker_mid_shard

import edgegrad
from edgegrad import errors
from edgegrad.client import AsyncClient, Client
from edgegrad.engine.population_checks import Rows
from edgegrad.jobs.keys import Keys
from edgegrad.model.population import PopulationColumns
from edgegrad.server.cluster import Cluster
from edgegrad.v1 import job_pb2, service_pb2, service_pb2_grpc
from edgegrad.wire.codec import array_from_tensor, network_to_proto, tensor_from_array
from edgegrad.wire.columns import networks_to_proto
from edgegrad.wire.population_rows import put_rows

RNG = np.random.default_rng(71)
NETS = [example_network(n_inputs=3, n_nodes=4 + i % 9, n_outputs=2, density=0.5, seed=100 + i) for i in range(23)]
NETS[5] = NETS[2]  # the same object twice: two independent results
X = RNG.normal(size=(19, 3))
T = RNG.uniform(size=(19, 2))
EACH_X = [RNG.normal(size=(3 + i % 5, 3)) for i in range(len(NETS))]
EACH_T = [RNG.uniform(size=(a.shape[0], 2)) for a in EACH_X]
C = 0.05

MODES = [
    dict(),
    dict(targets=T, loss="mse"),
    dict(targets=T, loss="softmax_ce", reduction="sum", per_example=True),
    dict(targets=T, loss="mse", norms=True),
    dict(targets=T, loss="mse", clip_norm=C, per_example=True),
    dict(targets=T, loss="mse", clip_norm=C, dtype="float32"),
    dict(inputs=EACH_X, targets=EACH_T, loss="mse", clip_norm=C),
    dict(inputs=EACH_X),
]


def _ids(mode: dict) -> str:
    return ",".join(f"{k}={v}" if k not in ("inputs", "targets") else f"{k}=each" * isinstance(v, list)
                    for k, v in mode.items()).replace(",targets=", "") or "output-mode"



@pytest.mark.parametrize("mode", MODES, ids=_ids)
def test_population_results_equal_in_process_gradients_many(cluster, mode) -> None:
    mode = dict(mode)
    x = mode.pop("inputs", X)
    local = edgegrad.gradients_many(NETS, x, **mode)
    with Client(cluster.address, timeout=120) as client:
        remote = client.gradients_many(NETS, x, shard_networks=4, **mode)
        job = client.submit_population(NETS, x, shard_networks=5, **mode)
        arrived = list(job.results())
        info = job.refresh()
    assert len(remote) == len(NETS)
    for got, want in zip(remote, local):
        assert_same_bits(got, want)
    assert sorted(i for i, _ in arrived) == list(range(len(NETS)))   # each network once, in any order
    for i, got in arrived:
        assert_same_bits(got, local[i])
    assert info.population_size == len(NETS) and len(info.shards) == 5
    assert [(s.network_start, s.network_stop) for s in info.shards] == [(0, 5), (5, 10), (10, 15), (15, 20),
                                                                          (20, 23)]


def test_outputs_many_through_the_service_equals_in_process(cluster) -> None:
    with Client(cluster.address, timeout=120) as client:
        remote = client.outputs_many(NETS, X)
    for got, want in zip(remote, edgegrad.outputs_many(NETS, X)):
        assert got.tobytes() == want.tobytes()


def test_a_populations_shards_run_on_two_workers_and_stream_per_shard(cluster) -> None:
    with Client(cluster.address, timeout=120) as client:
        cluster.wait_for_workers()
        seen: set[str] = set()
        for _ in range(5):  # both workers take shards of one job (retried: the first may take them all)
            job = client.submit_population(NETS, X, targets=T, loss="mse", shard_networks=1)
            chunks = list(job.chunks())
            info = job.refresh()
            seen = {s.worker for s in info.shards}
            if len(seen) == 2:
                break
    assert len(seen) == 2
    assert {c.shard for c in chunks} == set(range(len(NETS)))
    for c in chunks:  # a chunk names its shard's networks
        assert c.shard <= c.row_start < c.row_stop <= c.shard + 1


def test_the_services_own_shards_give_each_worker_a_part_of_a_population_worth_cutting(cluster) -> None:
    nets = [example_network(n_inputs=3, n_nodes=30, n_outputs=2, density=0.5, seed=900 + i) for i in range(200)]
    x = np.random.default_rng(5).normal(size=(512, 3))
    with Client(cluster.address, timeout=120) as client:
        cluster.wait_for_workers()
        big = client.submit_population(nets, x)                       # about 10^7 rows × (edges + nodes)
        small = client.submit_population(nets[:3], x[:8])
        assert len(big.result()) == 200 and len(small.result()) == 3
        assert len(big.refresh().shards) >= len(cluster.workers) == 2   # a part each (a dead worker may count)
        assert len(small.refresh().shards) == 1                           # too little work to be worth cutting


def test_a_killed_workers_shard_alone_reruns_nothing_lost_or_duplicated(namespace) -> None:
    big = [example_network(n_inputs=8, n_nodes=120, n_outputs=2, density=0.5, seed=200 + i) for i in range(8)]
    x = np.random.default_rng(5).normal(size=(30000, 8))
    t = np.random.default_rng(6).uniform(size=(30000, 2))
    with Cluster(namespace("popkill"), workers=2, log=sys.stderr) as cluster, \
            Client(cluster.address, timeout=300) as client:
        cluster.wait_for_workers()
        client.gradients_many(big[:1], x[:10], t[:10], loss="mse")  # the kernel compiled in both? at least one
        handle = client.submit_population(big, x, targets=t, loss="mse", shard_networks=2)
        job, running = kill_worker_mid_shard(cluster, handle)  # worker 0, while it runs a shard
        finished_before = {s.index for s in job.shards if s.state == job_pb2.JOB_STATE_SUCCEEDED}
        arrived = list(handle.results())
        job = handle.refresh()
    local = edgegrad.gradients_many(big, x, t, loss="mse")
    assert sorted(i for i, _ in arrived) == list(range(len(big)))    # nothing lost, nothing twice
    for i, got in arrived:
        assert_same_bits(got, local[i])
    retried = {s.index for s in job.shards if s.attempt > 1}
    assert retried == set(running)               # the killed worker's shard, and only it, ran again
    assert not retried & finished_before
    assert job.state == job_pb2.JOB_STATE_SUCCEEDED and job.shards_done == 4


def test_cancel_mid_population_stops_its_shards_and_results_stop(namespace) -> None:
    big = [example_network(n_inputs=8, n_nodes=80, n_outputs=2, density=0.5, seed=300 + i) for i in range(12)]
    x = np.random.default_rng(7).normal(size=(20000, 8))
    with Cluster(namespace("popcancel"), workers=1, log=sys.stderr) as cluster, \
            Client(cluster.address, timeout=300) as client:
        handle = client.submit_population(big, x, targets=np.zeros((20000, 2)), loss="mse", shard_networks=1)
        arrived = []
        for index, _res in handle.results():
            arrived.append(index)
            if len(arrived) == 1:
                assert handle.cancel().state == job_pb2.JOB_STATE_CANCELLED
        time.sleep(0.5)
        job = handle.refresh()
        with pytest.raises(errors.Cancelled):
            handle.result()
        handle.delete()
        with pytest.raises(errors.NotFound):
            client.get_job(handle.name)
    assert job.state == job_pb2.JOB_STATE_CANCELLED
    assert 1 <= len(arrived) < len(big) and job.shards_done < len(big)


def test_rewatching_a_population_from_a_seq_continues_without_gap(cluster) -> None:
    with Client(cluster.address, timeout=120) as client:
        job = client.submit_population(NETS, X, targets=T, loss="mse", per_example=True, shard_networks=3)
        whole = job.result()
        again = client.population_job(job.name)          # watched again from the start: every network
        assert sorted(i for i, _ in again.results()) == list(range(len(NETS)))
        for got, want in zip(again.result(), whole):
            assert_same_bits(got, want)
        chunks = list(client.job(job.name).chunks())
        later = list(client.job(job.name, after_seq=4).chunks())
    assert [c.seq for c in later] == [c.seq for c in chunks][4:]


@pytest.mark.parametrize("change, message", [
    (lambda p: p.inputs_each.pop(), "inputs: expected 23 arrays (one per network), got 22"),
    (lambda p: p.inputs_each[7].CopyFrom(tensor_from_array(np.zeros((3, 4)))), "inputs[7]: expected shape (B, 3)"),
    (lambda p: p.members[4].network_inline.outputs.append("nope"), "nets[4]"),
    (lambda p: p.members[2].weights.CopyFrom(tensor_from_array(np.zeros(1))), "nets[2].weights: expected"),
    (lambda p: p.members[9].ClearField("network_inline"), "nets[9]: missing"),
    (lambda p: p.members.add(network_hash="ab" * 32), "nets[23]: network_hash: no network"),
])
def test_bad_population_input_is_invalid_argument_naming_the_entry_and_makes_no_job(namespace, thread_server,
                                                                                     change, message) -> None:
    server = thread_server(namespace("popbad"))
    pop = job_pb2.PopulationRequest(inputs_each=[tensor_from_array(a) for a in EACH_X])
    for net in NETS:
        pop.members.add().network_inline.CopyFrom(network_to_proto(net))
    change(pop)
    _refused_with_no_job(server.address, pop, message, "no network")


def _refused_with_no_job(address: str, pop: job_pb2.PopulationRequest, message: str, not_found: str) -> None:
    """SubmitJob of ``pop`` fails naming ``message`` (NOT_FOUND where it says ``not_found``, else INVALID_ARGUMENT),
    and no job is made."""
    with grpc.insecure_channel(address) as channel:
        stub = service_pb2_grpc.EdgegradStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.SubmitJob(service_pb2.SubmitJobRequest(population=pop), timeout=30)
        jobs = stub.ListJobs(service_pb2.ListJobsRequest(), timeout=30).jobs
    expected = grpc.StatusCode.NOT_FOUND if not_found in message else grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.code() == expected
    assert message in info.value.details()
    assert not jobs


def _columns_request() -> job_pb2.PopulationRequest:
    """NETS in columns, with per-network rows packed."""
    pop = job_pb2.PopulationRequest(networks=networks_to_proto(PopulationColumns.from_networks(NETS)))
    put_rows(pop, "inputs", Rows(None, EACH_X))
    return pop


def _tensor_set(tensor, index, value) -> None:
    arr = array_from_tensor(tensor, "t").copy()
    arr[index] = value
    tensor.CopyFrom(tensor_from_array(arr))


def _rows_with_none_for(pop: job_pb2.PopulationRequest, p: int) -> None:
    """Network p's packed rows: none."""
    pop.ClearField("inputs_packed")
    pop.ClearField("row_counts")
    put_rows(pop, "inputs", Rows(None, EACH_X[:p] + [np.zeros((0, 3))] + EACH_X[p + 1:]))


_COLS = PopulationColumns.from_networks(NETS)


@pytest.mark.parametrize("change, message", [
    (lambda p: _tensor_set(p.networks.weights, int(_COLS.edge_off[6]) + 2, np.nan),
     "nets[6]: edges[2].weight: must be finite, got nan"),
    (lambda p: _tensor_set(p.networks.dst, int(_COLS.edge_off[11]), 0),
     "nets[11]: edges[0].dst: 'x0' is an input and cannot have incoming edges"),
    (lambda p: _tensor_set(p.networks.outputs, int(_COLS.out_off[3]) + 1, int(_COLS.outputs[_COLS.out_off[3]])),
     "nets[3]: outputs[1]: duplicate output"),
    (lambda p: p.networks.src.CopyFrom(tensor_from_array(np.zeros(5, dtype=np.int32))), "networks.src: expected"),
    (lambda p: p.members.add(network_hash="ab" * 32), "networks: give the networks as members, networks or"),
    (lambda p: p.inputs_packed.CopyFrom(tensor_from_array(np.zeros(7))), "inputs_packed: expected"),
    (lambda p: _rows_with_none_for(p, 7), "inputs[7]: the batch is empty"),
    (lambda p: (p.ClearField("networks"), setattr(p, "networks_hash", "cd" * 32)),
     "networks_hash: no population topology"),
])
def test_bad_columns_are_invalid_argument_naming_the_network_and_make_no_job(namespace, thread_server, change,
                                                                            message) -> None:
    server = thread_server(namespace("popbadcols"))
    pop = _columns_request()
    change(pop)
    _refused_with_no_job(server.address, pop, message, "no population")


def test_a_fine_tuning_steps_bad_values_name_the_network(namespace, thread_server) -> None:
    server = thread_server(namespace("popbadvalues"))
    with grpc.insecure_channel(server.address) as channel:
        stub = service_pb2_grpc.EdgegradStub(channel)
        job = stub.SubmitJob(service_pb2.SubmitJobRequest(population=_columns_request()), timeout=30)
        digest = job.layout.population.networks_hash
        assert digest == _COLS.content_hash()
        weights = _COLS.weights.copy()
        weights[int(_COLS.edge_off[9]) + 1] = np.inf
        for values, biases, message in ((weights[:-1], _COLS.biases, "weights: expected"),
                                        (weights, _COLS.biases, "nets[9].weights[1]: expected a finite number, got inf"),
                                        (_COLS.weights, _COLS.biases[:3], "biases: expected"),
                                        (_COLS.weights, None, "biases: missing")):
            pop = job_pb2.PopulationRequest(networks_hash=digest, weights=tensor_from_array(values))
            put_rows(pop, "inputs", Rows(None, EACH_X))
            if biases is not None:
                pop.biases.CopyFrom(tensor_from_array(biases))
            with pytest.raises(grpc.RpcError) as info:
                stub.SubmitJob(service_pb2.SubmitJobRequest(population=pop), timeout=30)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in info.value.details()
        pop.biases.CopyFrom(tensor_from_array(_COLS.biases))
        pop.weights.CopyFrom(tensor_from_array(_COLS.weights * 2))
        again = stub.SubmitJob(service_pb2.SubmitJobRequest(population=pop), timeout=30)   # a good step: a job
        assert again.layout.population.networks_hash == digest and again.name != job.name
        assert len(stub.ListJobs(service_pb2.ListJobsRequest(), timeout=30).jobs) == 2


def test_bad_population_input_from_the_client_names_the_entry(cluster) -> None:
    with Client(cluster.address, timeout=30) as client:
        with pytest.raises(errors.InvalidInput, match=r"nets\[1\]: expected an edgegrad.Network, got dict"):
            client.gradients_many([NETS[0], {}], X)
        with pytest.raises(errors.InvalidInput, match=r"inputs\[1\]: "):
            client.submit_population(NETS[:2], [X, np.zeros((2, 5))])


class _Counter(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Counts calls by method, and keeps the population requests sent."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.populations: list[job_pb2.PopulationRequest] = []

    def _note(self, details, request) -> None:
        self.calls.append(details.method.rsplit("/", 1)[-1])
        if isinstance(request, service_pb2.SubmitJobRequest) and request.HasField("population"):
            self.populations.append(request.population)

    def intercept_unary_unary(self, continuation, details, request):
        self._note(details, request)
        return continuation(details, request)

    def intercept_unary_stream(self, continuation, details, request):
        self._note(details, request)
        return continuation(details, request)


def test_new_networks_take_no_round_trip_and_fine_tuning_sends_weights_not_networks(cluster) -> None:
    fresh = [example_network(n_inputs=3, n_nodes=5 + i % 4, n_outputs=2, seed=900 + i) for i in range(12)]
    counter = _Counter()
    with Client(cluster.address, timeout=120, interceptors=[counter]) as client:
        job = client.submit_population(fresh, X, T, loss="mse")
        job.result()
        assert counter.calls == ["Compute"]      # stored inside the one call that submits the job
        first = counter.populations[0]
        assert first.HasField("networks") and not first.members and not first.networks_hash   # in columns
        assert list(first.networks.sizes.shape) == [12, 4] and first.networks.src.shape[0] == \
            sum(n.n_edges for n in fresh)
        digest = job.refresh().layout.population.networks_hash
        assert digest == PopulationColumns.from_networks(fresh).content_hash()
        client.gradients_many(fresh, X, T, loss="mse")
        rng = np.random.default_rng(3)
        tuned = [n.with_parameters(n.weights + rng.normal(size=n.n_edges) * 0.01, n.biases - 0.01) for n in fresh]
        remote = client.gradients_many(tuned, X, T, loss="mse")
    assert counter.calls == ["Compute", "GetJob", "Compute", "Compute"]
    for step in counter.populations[1:]:       # the topology is never sent again: its hash, and the values
        assert step.networks_hash == digest and not step.HasField("networks") and not step.members
        assert step.weights.shape == [sum(n.n_edges for n in fresh)] and step.biases.shape == \
            [sum(n.n_nodes for n in fresh)]
    assert np.frombuffer(counter.populations[2].weights.data).tobytes() == \
        np.concatenate([n.weights for n in tuned]).tobytes()
    for got, want in zip(remote, edgegrad.gradients_many(tuned, X, T, loss="mse")):
        assert_same_bits(got, want)


def test_a_topology_the_service_lost_is_sent_again_once(cluster, redis_url) -> None:
    import redis

    nets = [example_network(n_inputs=3, n_nodes=6 + i % 3, n_outputs=2, seed=1300 + i) for i in range(7)]
    counter = _Counter()
    with Client(cluster.address, timeout=120, interceptors=[counter]) as client:
        digest = client.submit_population(nets, X).refresh().layout.population.networks_hash
        keys = Keys(cluster.settings.key_prefix)
        with redis.Redis.from_url(redis_url) as r:
            assert r.delete(keys.population(digest)) == 1        # expired, say
        tuned = [n.with_parameters(n.weights * 1.5) for n in nets]
        remote = client.gradients_many(tuned, X, T, loss="mse")
    sent = counter.populations
    assert [bool(p.networks_hash) for p in sent] == [False, True, False]   # refused by hash, then whole again
    for got, want in zip(remote, edgegrad.gradients_many(tuned, X, T, loss="mse")):
        assert_same_bits(got, want)


def test_a_population_is_created_after_redis_lost_its_scripts(namespace, thread_server, tmp_path) -> None:
    """CREATE goes by sha in the pipeline that stores a new topology (no SCRIPT EXISTS round trip): a Redis that lost
    its scripts (a restart, SCRIPT FLUSH) gets them again and the job is made once, its topology stored."""
    import redis

    own = RedisProcess(tmp_path / "redis").start()
    try:
        settings = namespace("pop-noscript").with_(redis_url=f"redis://127.0.0.1:{own.port}/0")
        server = thread_server(settings)   # no workers: the jobs stay queued
        nets = [example_network(n_inputs=3, n_nodes=4 + i % 3, n_outputs=2, seed=1500 + i) for i in range(5)]
        with Client(server.address, timeout=60) as client, redis.Redis(port=own.port) as r:
            first = client.submit_population(nets, X, T, loss="mse")
            r.script_flush()
            again = [n.with_parameters(n.weights * 2.0) for n in reversed(nets)]   # another topology: stored anew
            second = client.submit_population(again, X, T, loss="mse")
            keys = Keys(settings.key_prefix)
            for job in (first, second):
                view = job.refresh()
                assert view.state == job_pb2.JOB_STATE_QUEUED
                assert r.exists(keys.population(view.layout.population.networks_hash)) == 1
            assert len({job.name for job in client.list_jobs()}) == 2
    finally:
        own.kill()


def test_the_member_form_still_runs_and_equals_in_process(cluster) -> None:
    pop = job_pb2.PopulationRequest(inputs=tensor_from_array(X), targets=tensor_from_array(T), loss="mse")
    for net in NETS[:12]:                        # one message per network: inline, then by hash with new weights
        pop.members.add().network_inline.CopyFrom(network_to_proto(net))
    for net in NETS[:11]:
        pop.members.add(network_hash=net.content_hash, weights=tensor_from_array(net.weights * 2))
    with Client(cluster.address, timeout=120) as client:
        job = client._unary(client.stub.SubmitJob, service_pb2.SubmitJobRequest(population=pop, shard_networks=4), 30)
        got = client.population_job(job.name).result()
    nets = NETS[:12] + [net.with_parameters(net.weights * 2) for net in NETS[:11]]
    assert len(got) == len(nets)
    for a, b in zip(got, edgegrad.gradients_many(nets, X, T, loss="mse")):
        assert_same_bits(a, b)


def test_a_population_counts_as_one_job_against_the_tenants_limit(namespace) -> None:
    with Cluster(namespace("poplimit", tenant_max_jobs=1), workers=0, log=sys.stderr) as cluster, \
            Client(cluster.address, timeout=30) as client:
        job = client.submit_population(NETS, X, shard_networks=2)    # 12 shards, one job
        assert len(job.refresh().shards) == 12
        with pytest.raises(errors.ResourceExhausted, match="1 jobs queued or running"):
            client.submit_population(NETS, X)
        job.cancel()


def test_asyncio_population_results_and_gradients_many(cluster) -> None:
    async def run():
        async with AsyncClient(cluster.address, timeout=120) as client:
            whole = await client.gradients_many(NETS, X, T, loss="mse", shard_networks=6)
            job = await client.submit_population(NETS, X, targets=T, loss="mse", shard_networks=7)
            arrived = [item async for item in job.results()]
            outs = await client.outputs_many(NETS, X)
            return whole, arrived, outs

    whole, arrived, outs = asyncio.run(run())
    local = edgegrad.gradients_many(NETS, X, T, loss="mse")
    for got, want in zip(whole, local):
        assert_same_bits(got, want)
    assert sorted(i for i, _ in arrived) == list(range(len(NETS)))
    for i, got in arrived:
        assert_same_bits(got, local[i])
    for got, want in zip(outs, edgegrad.outputs_many(NETS, X)):
        assert got.tobytes() == want.tobytes()


def _cli_population(tmp_path) -> tuple[list[str], list[edgegrad.Network], str, str]:
    """Three networks as NET arguments (a file, then a folder of two, sorted), and X, T files."""
    folder = tmp_path / "nets"
    folder.mkdir()
    nets = [example_network(n_inputs=3, n_nodes=6 + i, n_outputs=2, seed=500 + i) for i in range(3)]
    nets[0].save(str(tmp_path / "first.npz"))
    nets[2].save(str(folder / "b.npz"))
    nets[1].save(str(folder / "a.npz"))
    (folder / "notes.txt").write_text("not a network")
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "t.npy", T)
    return [str(tmp_path / "first.npz"), str(folder)], nets, str(tmp_path / "x.npy"), str(tmp_path / "t.npy")


def test_cli_grad_of_several_networks_prints_a_list_in_argument_order(cluster, tmp_path) -> None:
    import json

    paths, nets, xp, tp = _cli_population(tmp_path)
    local = edgegrad.gradients_many(nets, X, T, loss="mse")
    for where in (["--local"], ["--server", cluster.address]):
        run = edgegrad_cli("grad", *paths, "--inputs", xp, "--targets", tp, "--loss", "mse", *where)
        assert run.returncode == 0, run.stderr
        listed = json.loads(run.stdout)
        assert len(listed) == 3
        for item, want in zip(listed, local):
            assert item["loss"] == want.loss
            assert np.array(item["edge_grads"]).tobytes() == want.edge_grads.tobytes()


def test_cli_batch_of_a_folder_writes_one_folder_per_network(cluster, tmp_path) -> None:
    paths, nets, xp, tp = _cli_population(tmp_path)
    out = tmp_path / "out"
    run = edgegrad_cli("batch", *paths, "--inputs", xp, "--targets", tp, "--loss", "mse", "--per-example",
                       "--out", str(out), "--server", cluster.address)
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in out.iterdir()) == ["0", "1", "2"]
    for i, want in enumerate(edgegrad.gradients_many(nets, X, T, loss="mse", per_example=True)):
        assert np.load(out / str(i) / "edge_grads.npy").tobytes() == want.edge_grads.tobytes()
        assert float(np.load(out / str(i) / "loss.npy")) == want.loss
        assert list(np.load(out / str(i) / "nodes.npy")) == list(nets[i].node_ids)
    bad = edgegrad_cli("batch", *paths, "--inputs", xp, "--out", str(tmp_path / "r.npz"), "--server", cluster.address)
    assert bad.returncode == 2 and "--out is a folder" in bad.stderr


def test_admission_by_working_memory_names_the_network_or_the_shard(namespace, thread_server) -> None:
    from edgegrad.engine.memory import thread_count
    from edgegrad.engine.population_results import CHUNK_BYTES

    budget = thread_count() * CHUNK_BYTES + 200_000
    server = thread_server(namespace("popadmit", worker_memory_bytes=budget))
    rows = [X] * len(NETS)
    rows[6] = RNG.normal(size=(5000, 3))   # output mode: about 3 MB of result for this network alone
    huge = list(NETS)
    huge[4] = example_network(n_inputs=3, n_nodes=400, n_outputs=2, density=0.5, seed=9)   # packing alone: MBs
    with Client(server.address, timeout=30) as client:
        with pytest.raises(errors.ResourceExhausted, match=r"nets\[4\]: needs about \d+ bytes of worker memory"):
            client.submit_population(huge, X)
        job = client.submit_population(NETS, rows)    # network 6's rows are cut into row shards that fit
        shards = [s for s in job.refresh().shards if (s.network_start, s.network_stop) == (6, 7)]
        assert len(shards) > 1 and shards[0].row_start == 0 and shards[-1].row_stop == 5000
        assert all(a.row_stop == b.row_start for a, b in zip(shards, shards[1:]))
        job.cancel()
        with pytest.raises(errors.ResourceExhausted, match=r"shard_networks: networks 0\.\.22 need about"):
            client.submit_population(NETS, RNG.normal(size=(100, 3)), shard_networks=len(NETS))
        job = client.submit_population(NETS, RNG.normal(size=(100, 3)))   # the service cuts shards that fit
        assert len(job.refresh().shards) > 1
        job.cancel()


def test_the_readme_population_service_example_runs(cluster, monkeypatch) -> None:
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    blocks = re.findall(r"```python\n(.*?)```", (root / "README.md").read_text(encoding="utf-8"), re.S)
    setup = next(block for block in blocks if "edgegrad.gradients_many(nets" in block)
    service = next(block for block in blocks if "client.submit_population(" in block)
    monkeypatch.chdir(root)
    scope: dict = {}
    exec(compile(setup + service.replace("localhost:50051", cluster.address), "README.md", "exec"), scope)
    assert len(scope["results"]) == len(scope["nets"]) == len(scope["outs"])
    for got, want in zip(scope["results"], edgegrad.gradients_many(scope["nets"], scope["X"], scope["T"], loss="mse")):
        assert_same_bits(got, want)


def test_a_worker_decodes_a_populations_networks_once_across_steps(namespace, monkeypatch) -> None:
    import redis

    from edgegrad.jobs.worker_store import WorkerStore

    settings = namespace("popdecode", network_cache=2)
    store = WorkerStore(settings)
    client = redis.Redis.from_url(settings.redis_url)
    try:
        for net in NETS:
            client.set(store.keys.network(net.content_hash), network_to_proto(net).SerializeToString(), ex=60)
        hashes = [net.content_hash for net in NETS]
        reads: list[int] = []
        real = store.redis.mget
        monkeypatch.setattr(store.redis, "mget", lambda keys: reads.append(len(keys)) or real(keys))
        first = store.networks(hashes)
        again = store.networks(hashes)          # the next step of a fine-tuning loop: nothing read or decoded
        assert reads == [len(set(hashes))] and all(a is b for a, b in zip(first, again))
        assert [n.content_hash for n in again] == hashes
        small = WorkerStore(settings)
        monkeypatch.setattr(small.redis, "mget", lambda keys: reads.append(len(keys)) or real(keys))
        small._population.limit = 0             # a cache of one network: each step reads the others again
        small.networks(hashes)
        small.networks(hashes)
        assert reads[1:] == [len(set(hashes)), len(set(hashes)) - 1]
    finally:
        for net in NETS:
            client.delete(store.keys.network(net.content_hash))
        client.close()


def test_a_worker_reads_a_populations_topology_once_across_steps(namespace, monkeypatch) -> None:
    import redis

    from edgegrad.jobs.population_store import worker_topology
    from edgegrad.jobs.worker_store import WorkerStore
    from edgegrad.wire.columns import topology_blob

    settings = namespace("poptopology")
    store = WorkerStore(settings)
    client = redis.Redis.from_url(settings.redis_url)
    digest = _COLS.content_hash()
    try:
        client.set(store.keys.population(digest), topology_blob(_COLS), ex=60)
        reads: list[str] = []
        real = store.redis.get
        monkeypatch.setattr(store.redis, "get", lambda key: reads.append(key) or real(key))
        first = worker_topology(store, digest)
        again = worker_topology(store.for_tenant("other"), digest)   # every tenant's shards share it
        assert reads == [store.keys.population(digest)] and again is first
        assert first.content_hash() == digest and first.slice(4, 9).sizes.tolist() == _COLS.sizes[4:9].tolist()
        store.topologies.limit = 0                                    # the newest stays, whatever its size
        assert worker_topology(store, digest) is first
        client.delete(store.keys.population(digest))
        with pytest.raises(errors.NotFound, match="networks_hash: population topology .* expired"):
            worker_topology(WorkerStore(settings), digest)
    finally:
        client.delete(store.keys.population(digest))
        client.close()


def test_per_network_limits_and_the_result_limit_apply_and_request_ids_are_idempotent(namespace, thread_server) -> None:
    biggest = max(range(len(NETS)), key=lambda i: NETS[i].n_edges)
    limit = NETS[biggest].n_edges - 1
    server = thread_server(namespace("poplimits", max_edges=limit, max_result_bytes=20_000))
    with Client(server.address, timeout=30) as client:
        with pytest.raises(errors.ResourceExhausted, match=rf"nets\[{biggest}\]\.src: {limit + 1} edges, over the limit of {limit}"):
            client.submit_population(NETS, X)
        small = [n for n in NETS if n.n_edges <= limit]
        with pytest.raises(errors.ResourceExhausted, match="the population's results would take"):
            client.submit_population(small, X)                      # output mode: B×K×E per network
        first = client.submit_population(small, X, T, loss="mse", request_id="pop-1")
        again = client.submit_population(small, X, T, loss="mse", request_id="pop-1")   # now by hash: the same job
        assert first.name == again.name
        with pytest.raises(errors.AlreadyExists):
            client.submit_population(small, X, T, loss="bce", request_id="pop-1")
        first.cancel()


def test_a_tenant_sees_only_its_own_population_jobs_and_networks(namespace, thread_server, tmp_path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("alice alice-token\nbob bob-token\n")
    server = thread_server(namespace("poptenants", auth_token_file=str(tokens)))
    with Client(server.address, timeout=30, token="alice-token") as alice, \
            Client(server.address, timeout=30, token="bob-token") as bob:
        job = alice.submit_population(NETS[:3], X)                 # registers alice's networks inline
        with pytest.raises(errors.NotFound):
            bob.get_job(job.name)
        pop = job_pb2.PopulationRequest(inputs=tensor_from_array(X))
        pop.members.add(network_hash=NETS[0].content_hash)       # by hash: registered by alice only
        with pytest.raises(errors.NotFound, match=r"nets\[0\]: network_hash: no network"):
            bob._unary(bob.stub.SubmitJob, service_pb2.SubmitJobRequest(population=pop), 30)
        digest = job.refresh().layout.population.networks_hash   # alice's topology: not bob's to name
        cols = PopulationColumns.from_networks(NETS[:3])
        pop = job_pb2.PopulationRequest(inputs=tensor_from_array(X), networks_hash=digest,
                                        weights=tensor_from_array(cols.weights), biases=tensor_from_array(cols.biases))
        with pytest.raises(errors.NotFound, match=r"networks_hash: no population topology"):
            bob._unary(bob.stub.SubmitJob, service_pb2.SubmitJobRequest(population=pop), 30)
        assert alice._unary(alice.stub.SubmitJob, service_pb2.SubmitJobRequest(population=pop), 30).name
        assert not list(bob.list_jobs())
        job.cancel()


def test_the_neat_example_runs_its_gradient_steps_through_the_service(cluster) -> None:
    import json
    import subprocess
    from pathlib import Path

    pytest.importorskip("neat", reason="neat-python not installed (pip install 'edgegrad[neat]')")
    script = Path(__file__).resolve().parents[2] / "examples" / "neat" / "lamarckian.py"
    run = subprocess.run([sys.executable, str(script), "--quick", "--server", cluster.address], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["largest_edgegrad_neat_difference"] < 1e-9   # the service's results written back, scored by neat
    assert len(report["lamarckian_curve"]) == 4 and report["lamarckian_curve"][0] > report["plain_curve"][0]


def test_an_overflow_fails_the_job_naming_its_network_by_its_place_in_the_population(cluster) -> None:
    nets = list(NETS[:9])
    huge = NETS[8].with_parameters(np.full(NETS[8].n_edges, 1e200))
    nets[8] = huge
    x = X * 1e150
    with pytest.raises(errors.InvalidInput) as local:
        edgegrad.gradients_many(nets, x, T, loss="mse")
    with Client(cluster.address, timeout=120) as client:
        job = client.submit_population(nets, x, T, loss="mse", shard_networks=4)   # network 8 runs alone in shard 2
        with pytest.raises(errors.EdgegradError) as remote:
            list(job.results())
        with pytest.raises(errors.EdgegradError):
            job.result()
    assert str(local.value).startswith("nets[8]: ")
    assert remote.value.message == local.value.message       # nets[8], not its place in shard 2 (nets[0])



def test_a_population_referring_to_a_topology_the_service_lacks_is_sent_again_inline_once(namespace,
                                                                                          thread_server) -> None:
    """Both clients: a population referring by hash to a topology the service does not have (the client
    believed it stored it) is refused with NotFound, then sent once more with its networks inline."""
    from edgegrad.model.population import PopulationColumns

    server = thread_server(namespace("poplost"))
    digest = PopulationColumns.from_networks(NETS[:4]).content_hash()
    counter = _Counter()
    with Client(server.address, timeout=30, interceptors=[counter]) as client:
        client.topologies.add(digest, digest)      # what the client believes; the service never had it
        job = client.submit_population(NETS[:4], X)
        job.cancel()
    first, again = counter.populations
    assert first.networks_hash == digest and not first.HasField("networks")
    assert again.HasField("networks") and not again.networks_hash
    assert job.name.startswith("jobs/")

    async def asyncio_client() -> str:
        async with AsyncClient(server.address, timeout=30) as aclient:
            other = PopulationColumns.from_networks(NETS[6:8]).content_hash()
            aclient.topologies.add(other, other)
            ajob = await aclient.submit_population(NETS[6:8], X)
            await ajob.cancel()
            return ajob.name

    assert asyncio.run(asyncio_client()).startswith("jobs/")
