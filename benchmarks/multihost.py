"""Multi-host benchmark: workers on other "hosts" (network namespaces, ``benchmarks/hosts.py``) sharing one
Redis; rows/s, where shards ran, and Redis commands and bytes per job and per shard.

    python -m benchmarks.multihost            # ~1 minute on 2 cores
    python -m benchmarks.multihost --quick    # fewer rows and jobs

Needs root and iproute2 (prints why and exits 0 otherwise). A private redis-server and the edgegrad
server listen on the root side of the links; ``--hosts`` namespaces run ``--workers-per-host``
workers each (``EDGEGRAD_THREADS`` = ``--threads``). Redis figures are deltas of ``INFO commandstats``
(calls, INFO itself left out) and ``INFO stats`` (``total_net_input_bytes`` / ``total_net_output_bytes``)
on that private Redis around each measured step; the background rate of idle workers is measured
too and shown separately. Nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import collections
import inspect
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence

if __package__ in (None, ""):                         # run as a script: python benchmarks/multihost.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "benchmarks"

import numpy as np
import redis

import edgegrad
from edgegrad.client import Client

from . import networks
from .hosts import HostFleet, NamespacesUnavailable, host_of, unavailable_reason
from .service import BareRq

SHARDING = "shard_rows" in inspect.signature(Client.submit).parameters


class RedisMeter:
    """Commands and network bytes a Redis has handled, as deltas between two readings."""

    def __init__(self, url: str) -> None:
        self.conn = redis.Redis.from_url(url)

    def read(self) -> dict[str, int]:
        """Calls per command (INFO excluded), plus ``_in`` / ``_out`` network bytes."""
        counts = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in self.conn.info("commandstats").items()
                  if k != "cmdstat_info"}
        stats = self.conn.info("stats")
        counts["_in"] = int(stats["total_net_input_bytes"])
        counts["_out"] = int(stats["total_net_output_bytes"])
        return counts

    def measure(self, action: Callable[[], object]) -> tuple[dict[str, int], float]:
        """Run ``action``; (the counters' deltas, seconds it took)."""
        before = self.read()
        t0 = time.perf_counter()
        action()
        elapsed = time.perf_counter() - t0
        after = self.read()
        return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}, elapsed

    def close(self) -> None:
        self.conn.close()


def ops(delta: dict[str, int]) -> int:
    """Commands in a delta."""
    return sum(v for k, v in delta.items() if not k.startswith("_"))


def top(delta: dict[str, int], n: int = 8, per: float = 1.0) -> str:
    """The ``n`` most called commands of a delta, per ``per`` units."""
    calls = sorted(((v, k) for k, v in delta.items() if not k.startswith("_")), reverse=True)[:n]
    return ", ".join(f"{k} {v / per:.1f}" for v, k in calls)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the figures."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.multihost", description=__doc__.split("\n\n")[0])
    p.add_argument("--hosts", type=int, default=2)
    p.add_argument("--workers-per-host", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="EDGEGRAD_THREADS of each worker (default 1)")
    p.add_argument("--rows", type=int, default=None, help="rows of the loss-mode job (default 20000, --quick 8192)")
    p.add_argument("--shard-rows", type=int, default=None,
                   help="rows per shard when Client.submit takes shard_rows (default rows/8)")
    p.add_argument("--per-example-rows", type=int, default=None, help="rows of the per-example job (default 512)")
    p.add_argument("--tiny", type=int, default=None, help="tiny jobs, one after another (default 200, --quick 60)")
    p.add_argument("--runs", type=int, default=None, help="runs of each big job (default 3, --quick 2)")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    rows = args.rows or (8192 if args.quick else 20000)
    shard_rows = args.shard_rows or max(1, rows // 8)
    pe_rows = args.per_example_rows or (256 if args.quick else 512)
    n_tiny = args.tiny or (60 if args.quick else 200)
    runs = args.runs or (2 if args.quick else 3)

    reason = unavailable_reason()
    if reason:
        print(f"multihost benchmark skipped: {reason}")
        return 0
    net = networks.irregular_dag(0, n_inputs=64, n_levels=8, width=125, n_outputs=8)   # ~10k edges
    X, T = networks.batch(net, rows, 0)
    Xp, Tp = networks.batch(net, pe_rows, 1)
    tiny = networks.tiny(0)
    x1 = networks.batch(tiny, 1, 0)[0]
    fleet = HostFleet(hosts=args.hosts, workers_per_host=args.workers_per_host,
                      env={"EDGEGRAD_THREADS": str(args.threads)})
    try:
        fleet.start()
    except NamespacesUnavailable as exc:
        print(f"multihost benchmark skipped: {exc}")
        return 0
    try:
        print(f"edgegrad multihost benchmark: {platform.machine()}, {os.cpu_count()} cores, Python "
              f"{platform.python_version()}; {args.hosts} hosts x {args.workers_per_host} workers "
              f"(EDGEGRAD_THREADS={args.threads}) in network namespaces on {fleet.links.subnet}; Redis and "
              f"server on {fleet.links.gateway}; network {net.n_edges:,} edges, {net.n_nodes:,} nodes", flush=True)
        with Client(fleet.address, timeout=600) as client:
            meter = RedisMeter(fleet.settings.redis_url)
            try:
                _run(fleet, client, meter, net, X, T, Xp, Tp, tiny, x1, shard_rows, n_tiny, runs)
            finally:
                meter.close()
    finally:
        fleet.stop()
    return 0


def _run(fleet: HostFleet, client: Client, meter: RedisMeter, net: edgegrad.Network, X: np.ndarray,
         T: np.ndarray, Xp: np.ndarray, Tp: np.ndarray, tiny: edgegrad.Network, x1: np.ndarray,
         shard_rows: int, n_tiny: int, runs: int) -> None:
    client.register(net)
    client.register(tiny)
    rows = len(X)
    # -- background: idle workers' heartbeats and registry clean-ups
    idle, idle_s = meter.measure(lambda: time.sleep(6.0))
    idle_rate = ops(idle) / idle_s
    print(f"idle fleet: {idle_rate:.1f} Redis commands/s ({top(idle, 5, idle_s)} per s)")

    # -- the large loss-mode job: in-process vs through the service
    local = edgegrad.gradients(net, X, targets=T, loss="mse")
    t_local = min(_timed(lambda: edgegrad.gradients(net, X, targets=T, loss="mse")) for _ in range(runs))
    shard = {"shard_rows": shard_rows} if SHARDING else {}
    jobs = []

    def big() -> None:
        handle = client.submit(net, X, targets=T, loss="mse", **shard)
        result = handle.result()
        jobs.append(handle.job)
        if not _close(result, local):
            raise RuntimeError("service result differs from the in-process result beyond 1e-12")

    big()                                               # warm: each worker compiles its plan
    deltas = [meter.measure(big) for _ in range(runs)]
    t_svc = min(s for _, s in deltas)
    delta = min((d for d, _ in deltas), key=ops)
    job = jobs[-1]
    per_host = collections.Counter(host_of(s.worker) for s in job.shards)
    n_shards = len(job.shards)
    print(f"loss-mode job, {rows:,} rows, mse: in-process {rows / t_local:,.0f} rows/s ({t_local * 1e3:.0f} ms); "
          f"service {rows / t_svc:,.0f} rows/s ({t_svc * 1e3:.0f} ms, {t_svc / t_local:.2f}x), min of {runs}")
    print(f"  shards: {n_shards} ({'shard_rows=' + str(shard_rows) if SHARDING else 'sharding not merged: one per job'});"
          f" per host: {dict(sorted(per_host.items()))}")
    print(f"  Redis per job: {ops(delta)} commands, {delta.get('_in', 0):,} B in, {delta.get('_out', 0):,} B out"
          f" (incl. ~{idle_rate * t_svc:.0f} background commands); {top(delta)}")
    if SHARDING and n_shards > 1:
        one = {"shard_rows": rows}
        d1, _ = meter.measure(lambda: client.submit(net, X, targets=T, loss="mse", **one).result())
        extra = (ops(delta) - ops(d1)) / (n_shards - 1)
        print(f"  Redis per extra shard: {extra:.1f} commands, "
              f"{(delta.get('_in', 0) - d1.get('_in', 0)) / (n_shards - 1):,.0f} B in, "
              f"{(delta.get('_out', 0) - d1.get('_out', 0)) / (n_shards - 1):,.0f} B out "
              f"(same job as 1 shard: {ops(d1)} commands)")

    # -- per-example: the result itself goes through Redis
    pe = dict(targets=Tp, loss="mse", per_example=True)
    local_pe = edgegrad.gradients(net, Xp, **pe)
    result_bytes = local_pe.edge_grads.nbytes + local_pe.deltas.nbytes + local_pe.outputs.nbytes
    t_local_pe = min(_timed(lambda: edgegrad.gradients(net, Xp, **pe)) for _ in range(runs))
    got: list[edgegrad.GradientResult] = []
    d_pe, t_pe = meter.measure(lambda: got.append(client.submit(net, Xp, **pe, **shard).result()))
    if not _close(got[0], local_pe):
        raise RuntimeError("per-example service result differs from the in-process result beyond 1e-12")
    print(f"per-example job, {len(Xp):,} rows: in-process {len(Xp) / t_local_pe:,.0f} rows/s, service "
          f"{len(Xp) / t_pe:,.0f} rows/s ({t_pe / t_local_pe:.2f}x); result {result_bytes:,} B; Redis: {ops(d_pe)} "
          f"commands, {d_pe.get('_in', 0):,} B in ({d_pe.get('_in', 0) / result_bytes:.2f}x result), "
          f"{d_pe.get('_out', 0):,} B out ({d_pe.get('_out', 0) / result_bytes:.2f}x result)")

    # -- tiny jobs one after another: the fixed cost of a job
    for _ in range(10):
        client.submit(tiny, x1).result()
    workers: list[str] = []

    def tiny_jobs() -> None:
        for _ in range(n_tiny):
            handle = client.submit(tiny, x1)
            handle.result()
            workers.append(handle.job.worker)

    d_tiny, t_tiny = meter.measure(tiny_jobs)
    background = idle_rate * t_tiny
    print(f"tiny jobs (10 nodes, B=1, submit -> result), {n_tiny} in a row: {n_tiny / t_tiny:.0f} jobs/s; per job "
          f"{ops(d_tiny) / n_tiny:.1f} Redis commands ({(ops(d_tiny) - background) / n_tiny:.1f} without the idle "
          f"background), {d_tiny.get('_in', 0) / n_tiny:,.0f} B in, {d_tiny.get('_out', 0) / n_tiny:,.0f} B out; "
          f"per host: {dict(sorted(collections.Counter(map(host_of, workers)).items()))}")
    print(f"  commands per tiny job: {top(d_tiny, 12, n_tiny)}")

    # -- rq's own share: a bare rq job on the same Redis (what every job, and every shard, pays at least)
    bare = BareRq(fleet.settings.redis_url, "bare-rq", workers=1)
    try:
        for _ in range(10):
            bare.round_trip()
        d_rq, t_rq = meter.measure(lambda: [bare.round_trip() for _ in range(n_tiny)])
    finally:
        bare.stop()
    print(f"bare rq job (enqueue -> finished, SimpleWorker, trivial function), {n_tiny} in a row: "
          f"{n_tiny / t_rq:.0f} jobs/s; per job {ops(d_rq) / n_tiny:.1f} Redis commands, "
          f"{d_rq.get('_in', 0) / n_tiny:,.0f} B in, {d_rq.get('_out', 0) / n_tiny:,.0f} B out; {top(d_rq, 8, n_tiny)}")


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _close(got: edgegrad.GradientResult, want: edgegrad.GradientResult) -> bool:
    """Equal within 1e-12 relative, field by field (and the loss)."""
    if (got.loss is None) != (want.loss is None):
        return False
    if want.loss is not None and abs(got.loss - want.loss) > 1e-12 * abs(want.loss):
        return False
    return all(np.allclose(getattr(got, f), getattr(want, f), rtol=1e-12, atol=0)
               for f in ("outputs", "edge_grads", "deltas"))


if __name__ == "__main__":
    sys.exit(main())
