"""Small jobs together (issue 18): tiny jobs through the service with batching on and off, beside bare rq.

    python -m benchmarks.small_jobs            # 300-job loop, 1,000 networks, best of 3 (a few minutes on 2 cores)
    python -m benchmarks.small_jobs --quick    # 100-job loop, 200 networks, best of 2

A tiny job is one row (B=1) on a network of 3 inputs, 6 tanh hidden nodes and 1 sigmoid output. For each
mode (batching on: the settings' defaults; off: batch_max_jobs=1) a cluster of one server and 2 workers runs
on a redis-server of this run alone (so INFO counts only this run), beside bare rq (2 SimpleWorkers on the same
Redis running a no-op function, ``benchmarks.service.BareRq``) timed in the same rounds:

1. a plain loop of ``submit()`` then ``wait()`` on each, vs bare rq's ``enqueue_many`` then a wait on each;
2. ``submit_many`` of tiny jobs on as many *different* networks, then ``result()`` on each: networks
   registered before the clock starts, and networks the server has never seen (``submit_many`` registers them);
3. sequential ``gradients()`` p50 vs a bare rq round trip p50;
4. Redis commands and bytes per job under loop 1 (INFO over the whole loop, polling and heartbeats included);
5. the batch-size distribution under loads 1 and 2, from the batch rq jobs' keys (``<prefix>:batch:<rq id>``,
   kept job_ttl): each mode has a key prefix and queue of its own, and a load's batches are the keys that
   appeared while it ran (loads run one after another, each waiting for all its jobs).

Throughput figures are the best of ``--runs`` rounds; every worker is warmed (kernels compiled) first.
Nothing asserts a speed.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import platform
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "benchmarks"

import numpy as np
import redis

import edgegrad
from edgegrad.client import Client
from edgegrad.jobs.keys import Keys
from edgegrad.server.cluster import Cluster
from edgegrad.settings import Settings
from edgegrad.v1 import job_pb2

from . import networks
from .batch import OwnRedis, ProcessCpu, _per_job
from .service import BareRq, _timed

__all__ = ["tiny_net", "batch_sizes", "histogram", "Tally", "main"]

Row = tuple[str, str, str]


def tiny_net(seed: int) -> edgegrad.Network:
    """The issue's tiny network: 3 inputs, 6 tanh hidden nodes, 1 sigmoid output, fully connected, weights from ``seed``."""
    return networks.mlp(seed, sizes=(3, 6, 1), hidden_activation="tanh", output_activation="sigmoid",
                        shuffle_edges=False)


def batch_sizes(conn: redis.Redis, prefix: str) -> dict[bytes, int]:
    """Jobs taken by each batch rq job of the default tenant under ``prefix``, by its batch key."""
    keys = list(conn.scan_iter(match=Keys(prefix).batch("*"), count=1000))
    pipe = conn.pipeline(transaction=False)
    for key in keys:
        pipe.llen(key)
    return dict(zip(keys, pipe.execute()))


def histogram(sizes: Sequence[int]) -> str:
    """Batches by size class (1, 2-3, 4-7, 8-15, ...) and the mean jobs per batch."""
    if not sizes:
        return "no batches"
    classes = Counter(int(s).bit_length() - 1 for s in sizes if s > 0)
    parts = []
    for k in range(max(classes) + 1):
        lo, hi = 1 << k, (2 << k) - 1
        parts.append(f"{lo if lo == hi else f'{lo}-{hi}'}: {classes.get(k, 0)}")
    return (f"{', '.join(parts)}; {len(sizes)} batches of {sum(sizes)} jobs, mean {np.mean(sizes):.1f} jobs/batch, "
            f"largest {max(sizes)}")


def _net_bytes(own: OwnRedis) -> int:
    stats = own.client.info("stats")
    return int(stats["total_net_input_bytes"]) + int(stats["total_net_output_bytes"])


class Tally:
    """Redis commands (by command) and bytes in + out over measured stretches, summed, and the jobs they ran."""

    def __init__(self, own: OwnRedis, cpu: ProcessCpu | None = None) -> None:
        self.own, self.commands, self.bytes, self.jobs = own, Counter[str](), 0, 0
        self.cpu, self.seconds = cpu, Counter[str]()

    @contextlib.contextmanager
    def measure(self, jobs: int) -> Iterator[None]:
        """Count what runs inside (INFO calls kept outside: commands read first, bytes last, and back)."""
        counts, sent = self.own.command_counts(), _net_bytes(self.own)
        used = self.cpu.read() if self.cpu is not None else {}
        yield
        used_after = self.cpu.read() if self.cpu is not None else {}
        sent_after, counts_after = _net_bytes(self.own), self.own.command_counts()
        self.bytes += sent_after - sent
        self.jobs += jobs
        self.commands.update({k: v - counts.get(k, 0) for k, v in counts_after.items()})
        self.seconds.update({k: v - used[k] for k, v in used_after.items() if k in used})

    def per_job(self) -> str:
        """Commands and bytes per job (and CPU per job of each process, where measured)."""
        cpu = ", ".join(f"{k} {v / self.jobs * 1e6:,.0f}" for k, v in self.seconds.items())
        return (f"{sum(self.commands.values()) / self.jobs:.1f} commands, {self.bytes / self.jobs:,.0f} bytes"
                + (f"; CPU µs/job: {cpu}" if cpu else ""))

    def split(self) -> str:
        """Commands per job by command, most frequent first."""
        return _per_job({}, dict(self.commands), self.jobs)


@dataclass
class _Mode:
    """One mode's cluster, client and what the run collects."""

    own: OwnRedis
    bare: BareRq
    client: Client
    prefix: str
    runs: int
    seeds: Iterator[int]
    cpu: ProcessCpu | None = None  #: the service's processes (server, workers, Redis) and this client
    net: edgegrad.Network = field(default_factory=lambda: tiny_net(0))
    x1: np.ndarray = field(default_factory=lambda: networks.batch(tiny_net(0), 1, 0)[0])  #: the one row

    def new_batches(self, before: dict[bytes, int]) -> list[int]:
        """Sizes of the batches made since ``before`` was read."""
        return [n for k, n in batch_sizes(self.own.client, self.prefix).items() if k not in before]


def _plain_loop(m: _Mode, n: int, label: str) -> Iterator[Row]:
    """Load 1: submit() n times, then wait() on each; bare rq's burst of n beside it, paired rounds."""
    svc, rq_, tally, rq_tally, sizes = [], [], Tally(m.own, m.cpu), Tally(m.own), []
    for _ in range(m.runs):
        before = batch_sizes(m.own.client, m.prefix)
        with tally.measure(n):
            t0 = time.perf_counter()
            handles = [m.client.submit(m.net, m.x1) for _ in range(n)]
            states = [h.wait().state for h in handles]
            svc.append(time.perf_counter() - t0)
        if any(s != job_pb2.JOB_STATE_SUCCEEDED for s in states):
            raise RuntimeError(f"plain loop: {sum(s != job_pb2.JOB_STATE_SUCCEEDED for s in states)} jobs did not succeed")
        sizes += m.new_batches(before)
        with rq_tally.measure(n):
            rq_.append(m.bare.burst(n))
    yield (f"{label} 1. submit() loop then wait() on each, {n} jobs", f"{n / min(svc):,.0f} jobs/s",
           f"bare rq {n / min(rq_):,.0f} jobs/s; service / bare rq = {min(rq_) / min(svc):.2f}x")
    yield (f"{label} 4. Redis per tiny job under loop 1, service", tally.per_job(), tally.split())
    yield (f"{label} 4. Redis per tiny job, bare rq burst", rq_tally.per_job(), rq_tally.split())
    yield (f"{label} 5. batch sizes under loop 1 ({m.runs} runs)", "", histogram(sizes))


def _many(m: _Mode, n: int, label: str, registered: bool) -> Iterator[Row]:
    """Load 2: submit_many of n jobs on n new networks, then result() on each; bare rq's burst of n beside it."""
    svc, rq_, sizes, same_many, same_one, worst = [], [], [], 0, 0, 0.0
    for _ in range(m.runs):
        nets = [tiny_net(next(m.seeds)) for _ in range(n)]
        if registered:
            for net in nets:
                m.client.register(net)
        before = batch_sizes(m.own.client, m.prefix)
        t0 = time.perf_counter()
        handles = m.client.submit_many([{"net": net, "inputs": m.x1} for net in nets])
        results = [h.result() if not isinstance(h, Exception) else h for h in handles]
        svc.append(time.perf_counter() - t0)
        errors = [r for r in results if isinstance(r, Exception)]
        if errors:
            raise RuntimeError(f"submit_many: {len(errors)} of {n} jobs not submitted, first: {errors[0]!r}")
        sizes += m.new_batches(before)
        rq_.append(m.bare.burst(n))
        for net, got in zip(nets, results):   # alone in the population engine; and the one-network engine
            same_many += got == edgegrad.gradients_many([net], m.x1)[0]
            want = edgegrad.gradients(net, m.x1)
            same_one += got == want
            worst = max(worst, float(np.max(np.abs(got.edge_grads - want.edge_grads))))
    how = "registered before the clock" if registered else "not registered (submit_many registers them)"
    yield (f"{label} 2. submit_many of {n} jobs on {n} networks {how}, then result()", f"{n / min(svc):,.0f} jobs/s",
           f"bare rq {n / min(rq_):,.0f} jobs/s; service / bare rq = {min(rq_) / min(svc):.2f}x; results bit-identical "
           f"to in-process gradients_many([net]) {same_many}/{n * m.runs}, to gradients(net) {same_one}/{n * m.runs} "
           f"(largest |edge-gradient difference| {worst:.1e})")
    yield (f"{label} 5. batch sizes under load 2, {'registered' if registered else 'not registered'} "
           f"({m.runs} runs)", "", histogram(sizes))


def _latency(m: _Mode, samples: int, label: str) -> Iterator[Row]:
    """Sequential gradients() p50 vs a bare rq round trip p50."""
    svc = float(np.percentile(_timed(lambda: m.client.gradients(m.net, m.x1), samples), 50))
    rq_ = float(np.percentile(_timed(m.bare.round_trip, samples), 50))
    yield (f"{label} 3. sequential gradients() p50 / bare rq round trip p50", f"{svc * 1e3:.2f} / {rq_ * 1e3:.2f} ms",
           f"ratio {svc / rq_:.2f}x, {samples} calls each")


def _warm(m: _Mode, n: int) -> None:
    """Every worker compiles its kernels (single jobs, batches of one network and of many) before any timing."""
    for _ in range(n):
        m.client.gradients(m.net, m.x1)
        m.bare.round_trip()
    for handle in [m.client.submit(m.net, m.x1) for _ in range(n)]:
        handle.wait()
    for h in m.client.submit_many([{"net": tiny_net(next(m.seeds)), "inputs": m.x1} for _ in range(n)]):
        if isinstance(h, Exception):
            raise h
        h.result()
    m.bare.burst(n)


def run_mode(own: OwnRedis, bare: BareRq, batching: bool, args: argparse.Namespace, seeds: Iterator[int],
             log: IO[str] | None) -> Iterator[Row]:
    """Every measure of one mode, on a fresh cluster (and key prefix) of 2 workers logging to ``log``."""
    prefix = f"sj-{'on' if batching else 'off'}"
    settings = Settings.from_env(redis_url=own.url, key_prefix=prefix, queue=prefix,
                                 batch_max_jobs=None if batching else 1)
    label = "[on] " if batching else "[off]"
    with Cluster(settings, workers=2, log=log) as cluster, Client(cluster.address, timeout=300) as client:
        cluster.wait_for_workers()
        assert cluster.server is not None
        cpu = ProcessCpu({"server": cluster.server.pid, "redis": own.proc.pid,
                          **{f"worker{i}": w.pid for i, w in enumerate(cluster.workers)}})
        m = _Mode(own, bare, client, prefix, args.runs, seeds, cpu=cpu)
        client.register(m.net)
        yield (f"{label} settings", f"batch_max_jobs {settings.batch_max_jobs}",
               f"batch_max_work {settings.batch_max_work}, batch_delay_ms {settings.batch_delay_ms}, 2 workers")
        _warm(m, args.warmup)
        yield from _plain_loop(m, args.jobs, label)
        yield from _many(m, args.networks, label, registered=True)
        yield from _many(m, args.networks, label, registered=False)
        yield from _latency(m, args.samples, label)


def _print(row: Row, width: int = 92) -> None:
    print(f"{row[0]:<{width}} {row[1]:>32}  {row[2]}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.small_jobs", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer jobs and networks, best of 2")
    p.add_argument("--jobs", type=int, default=None, help="jobs of the submit() loop (default 300, --quick 100)")
    p.add_argument("--networks", type=int, default=None, help="jobs (networks) of submit_many (default 1000, --quick 200)")
    p.add_argument("--samples", type=int, default=None, help="sequential latency calls (default 200, --quick 50)")
    p.add_argument("--runs", type=int, default=None, help="rounds; throughput is the best (default 3, --quick 2)")
    p.add_argument("--warmup", type=int, default=50, help="warm-up jobs of each kind, each side (default 50)")
    p.add_argument("--log", default=os.devnull, help="file for the cluster's own log (default: none; - for stderr)")
    p.add_argument("--modes", nargs="+", choices=("on", "off"), default=("on", "off"), help="batching on / off")
    args = p.parse_args(argv)
    args.jobs = args.jobs or (100 if args.quick else 300)
    args.networks = args.networks or (200 if args.quick else 1000)
    args.samples = args.samples or (50 if args.quick else 200)
    args.runs = args.runs or (2 if args.quick else 3)
    print(f"edgegrad small-jobs benchmark: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, load average {os.getloadavg()[0]:.2f}", flush=True)
    own = OwnRedis()
    table: list[Row] = []
    seeds = itertools.count(1)
    try:
        bare = BareRq(own.url, "bare", workers=2)
        with contextlib.ExitStack() as stack:
            stack.callback(bare.stop)
            log = None if args.log == "-" else stack.enter_context(open(args.log, "a"))
            for mode in args.modes:
                for row in run_mode(own, bare, mode == "on", args, seeds, log):
                    table.append(row)
                    _print(row)
    finally:
        own.stop()
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    for row in table:
        _print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
