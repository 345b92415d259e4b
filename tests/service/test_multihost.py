"""Workers on other "hosts": real workers in their own network namespaces reach a real Redis and the real
server over veth links (``benchmarks/hosts.py``), jobs go in through the SDK, and one job's shards
finish on workers of different hosts. Skipped with the reason where namespaces cannot be made."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import edgegrad  # noqa: E402
from benchmarks import networks  # noqa: E402
from benchmarks.hosts import HostFleet, NamespacesUnavailable, host_of  # noqa: E402
from edgegrad.v1 import job_pb2  # noqa: E402

HOSTS = 2
NET = networks.irregular_dag(1, n_inputs=64, n_levels=8, width=500, n_outputs=8)   # ~40k edges


@pytest.fixture(scope="module")
def fleet():
    """Two hosts with one worker each, a private Redis and the server on the root side of the links."""
    fleet = HostFleet(hosts=HOSTS, workers_per_host=1, log=sys.stderr, job_heartbeat_ttl=2,
                      maintenance_interval=1, worker_ttl=16)
    try:
        fleet.start()
    except NamespacesUnavailable as exc:
        pytest.skip(f"network namespaces unavailable here: {exc}")
    try:
        yield fleet
    finally:
        fleet.stop()


@pytest.fixture(scope="module")
def client(fleet):
    with edgegrad.Client(fleet.address, timeout=120) as c:
        yield c


def _assert_close(got: edgegrad.GradientResult, want: edgegrad.GradientResult) -> None:
    assert (got.loss is None) == (want.loss is None)
    if want.loss is not None:
        assert got.loss == pytest.approx(want.loss, rel=1e-12, abs=0)
    for field in ("outputs", "edge_grads", "deltas"):
        want_field = getattr(want, field)  # sums regrouped by shard: 1e-12 of the field's scale
        np.testing.assert_allclose(getattr(got, field), want_field, rtol=1e-12,
                                   atol=1e-12 * float(np.abs(want_field).max(initial=0.0)) or 1e-300, err_msg=field)


def _net_inode(pid: int) -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def test_each_host_is_its_own_network_namespace_and_talks_to_redis_over_its_link(fleet) -> None:
    cluster = fleet.cluster
    inodes = [_net_inode(proc.pid) for proc in cluster.workers]
    assert len(set(inodes)) == HOSTS and _net_inode(os.getpid()) not in inodes
    assert _net_inode(cluster.server.pid) == _net_inode(os.getpid()), "the server stays in the root namespace"
    assert fleet.registered() == [f"host{k}-w0" for k in range(1, HOSTS + 1)]
    r = redis.Redis.from_url(fleet.settings.redis_url)
    try:
        peers = {c["addr"].rsplit(":", 1)[0] for c in r.client_list()}
    finally:
        r.close()
    for k in range(1, HOSTS + 1):
        assert fleet.links.address(k) in peers, f"no Redis connection from host{k}'s address"
    assert fleet.address.startswith(fleet.links.gateway + ":")


def test_jobs_through_the_sdk_equal_in_process_and_run_on_every_host(fleet, client) -> None:
    batches = [networks.batch(NET, 1024, seed) for seed in range(6)]
    handles = [client.submit(NET, X, T, loss="mse") for X, T in batches]          # all queued at once
    handles.append(client.submit(NET, batches[0][0][:4]))                          # output mode too
    jobs = [h.wait() for h in handles]
    assert all(job.state == job_pb2.JOB_STATE_SUCCEEDED for job in jobs)
    for handle, (X, T) in zip(handles, batches):
        _assert_close(handle.result(), edgegrad.gradients(NET, X, T, loss="mse"))
    _assert_close(handles[-1].result(), edgegrad.gradients(NET, batches[0][0][:4]))
    hosts = {host_of(job.worker) for job in jobs}
    assert hosts == {f"host{k}" for k in range(1, HOSTS + 1)}, f"jobs ran on {sorted(hosts)} only"


def test_one_jobs_shards_finish_on_workers_of_different_hosts(fleet, client) -> None:
    X, T = networks.batch(NET, 4096, 7)
    handle = client.submit(NET, X, T, loss="mse", shard_rows=512)
    job = handle.wait()
    assert job.state == job_pb2.JOB_STATE_SUCCEEDED
    _assert_close(handle.result(), edgegrad.gradients(NET, X, T, loss="mse"))
    shards = sorted(job.shards, key=lambda s: s.index)
    assert shards and shards[0].row_start == 0 and shards[-1].row_stop == 4096
    assert all(a.row_stop == b.row_start for a, b in zip(shards, shards[1:])), "shards must tile the batch"
    assert all(s.state == job_pb2.JOB_STATE_SUCCEEDED and s.worker for s in shards)
    hosts = {host_of(s.worker) for s in shards}
    assert hosts <= {f"host{k}" for k in range(1, HOSTS + 1)}
    assert len(shards) == 8
    assert len(hosts) >= 2, f"every shard ran on {sorted(hosts)}"


def test_a_fleet_that_fails_to_start_leaves_no_namespace_link_or_process_behind() -> None:
    fleet = HostFleet(hosts=2, env={"EDGEGRAD_WORKER_TTL": "not-a-number"})   # server and workers exit 2
    with pytest.raises(RuntimeError) as failed:
        fleet.start(timeout=20)
    if isinstance(failed.value, NamespacesUnavailable):
        pytest.skip(f"network namespaces unavailable here: {failed.value}")
    assert "exited" in str(failed.value)
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert not [ns for ns in fleet.links.namespaces if ns in netns]
    assert not os.path.exists(f"/sys/class/net/{fleet.links.bridge}")
    assert fleet.redis is not None and fleet.redis.process is None, "the private Redis was stopped"
    assert all(proc.poll() is not None for proc in [fleet.cluster.server, *fleet.cluster.workers] if proc)
