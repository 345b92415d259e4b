"""Service benchmark: latency, throughput and big-job overhead through gRPC + rq, printed as a table.

    python -m benchmarks.service               # full run (a couple of minutes on 2 cores)
    python -m benchmarks.service --quick       # fewer jobs, a smaller big network

Everything runs on loopback against a local cluster (``edgegrad.server.cluster.Cluster``: one server
process, two worker processes) and the Redis at ``--redis-url`` / ``REDIS_URL`` (default
127.0.0.1:6379) in a namespace of its own, deleted at the end. Baselines measured in the same run:
a bare rq round trip (enqueue -> finished, non-forking SimpleWorker running a trivial function,
waited for with rq's blocking ``latest_result``) and the in-process ``edgegrad.gradients`` call.
Loops are bounded; nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

if __package__ in (None, ""):                         # run as a script: python benchmarks/service.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "benchmarks"

import numpy as np
import redis

import edgegrad
from edgegrad.client import AsyncClient, Client
from edgegrad.jobs.namespace import delete_namespace
from edgegrad.server.cluster import Cluster
from edgegrad.settings import Settings

from . import networks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def trivial(x: int) -> int:
    """The bare rq job: as little work as a job can do."""
    return x + 1


#: by name, so it resolves in the worker even when this file runs as ``__main__``
TRIVIAL = "benchmarks.service.trivial"


# ------------------------------------------------------------------ helpers
def _pcts(samples: Sequence[float]) -> tuple[float, float, float]:
    """p50, p99 and mean in milliseconds."""
    arr = np.asarray(samples) * 1e3
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99)), float(arr.mean())


def _timed(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


# ------------------------------------------------------------------ bare rq
class BareRq:
    """Non-forking rq workers running ``trivial`` on their own queue, and the enqueue side."""

    def __init__(self, url: str, queue: str, workers: int) -> None:
        from rq import Queue
        from rq.serializers import JSONSerializer

        self.conn = redis.Redis.from_url(url)
        self.queue = Queue(queue, connection=self.conn, serializer=JSONSerializer)
        self.procs = [subprocess.Popen([sys.executable, "-m", "benchmarks.service", "--rq-worker", url, queue,
                                        f"bare{i}-{queue}"], cwd=ROOT, start_new_session=True)
                      for i in range(workers)]
        from rq import Worker

        end = time.monotonic() + 30
        while Worker.count(queue=self.queue) < workers:
            if time.monotonic() > end:
                raise RuntimeError("bare rq workers did not start")
            time.sleep(0.05)

    def round_trip(self) -> None:
        """Enqueue one job and block until its result is stored."""
        job = self.queue.enqueue(TRIVIAL, 1, result_ttl=60)
        result = job.latest_result(timeout=30)
        if result is None or result.return_value != 2:
            raise RuntimeError(f"bare rq job {job.id} did not finish: {result}")

    def burst(self, n: int) -> float:
        """Enqueue ``n`` jobs at once; seconds until the last one has finished."""
        from rq import Queue

        t0 = time.perf_counter()
        jobs = self.queue.enqueue_many([Queue.prepare_data(TRIVIAL, (i,), result_ttl=60) for i in range(n)])
        for job in jobs:
            if job.latest_result(timeout=60) is None:
                raise RuntimeError(f"bare rq job {job.id} did not finish")
        return time.perf_counter() - t0

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.conn.close()


def _rq_worker(url: str, queue: str, name: str) -> int:
    """``--rq-worker``: one SimpleWorker (no fork per job) on ``queue``, JSON serializer."""
    from rq import Queue, SimpleWorker
    from rq.serializers import JSONSerializer

    conn = redis.Redis.from_url(url)
    q = Queue(queue, connection=conn, serializer=JSONSerializer)
    SimpleWorker([q], connection=conn, name=name, serializer=JSONSerializer).work(logging_level="WARNING")
    return 0


# ------------------------------------------------------------------ service side
async def _service_burst(address: str, net: edgegrad.Network, x: np.ndarray, n: int, concurrency: int) -> float:
    """``n`` tiny jobs through the service, ``concurrency`` in flight; seconds for all."""
    async with AsyncClient(address, timeout=120) as client:
        await client.register(net)
        queue = iter(range(n))

        async def lane() -> None:
            for _ in queue:
                await client.gradients(net, x)

        t0 = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(concurrency)))
        return time.perf_counter() - t0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.service", description=__doc__.split("\n\n")[0])
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    p.add_argument("--jobs", type=int, default=None, help="latency samples per system (default 500, --quick 150)")
    p.add_argument("--burst", type=int, default=None, help="jobs per throughput run (default 1000, --quick 300)")
    p.add_argument("--concurrency", type=int, default=32, help="service jobs in flight in the throughput run")
    p.add_argument("--width", type=int, default=None, help="big network level width (default 6000 = ~1M edges)")
    p.add_argument("--batch", type=int, default=256, help="big job batch size (default 256)")
    p.add_argument("--runs", type=int, default=None, help="big job runs per system (default 5, --quick 3)")
    p.add_argument("--skip-big", action="store_true", help="skip the ~1M-edge job")
    p.add_argument("--quick", action="store_true", help="fewer jobs, width 1500")
    p.add_argument("--rq-worker", nargs=3, metavar=("URL", "QUEUE", "NAME"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.rq_worker:
        return _rq_worker(*args.rq_worker)
    n_jobs = args.jobs or (150 if args.quick else 500)
    n_burst = args.burst or (300 if args.quick else 1000)
    width = args.width or (1500 if args.quick else 6000)
    runs = args.runs or (3 if args.quick else 5)

    prefix = f"egbench-{secrets.token_hex(4)}"
    settings = Settings.from_env(redis_url=args.redis_url, key_prefix=prefix, queue=prefix)
    rows: list[tuple[str, str, str]] = []
    tiny = networks.tiny(0)
    x1 = networks.batch(tiny, 1, 0)[0]
    print(f"edgegrad service benchmark: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, Redis {args.redis_url}, namespace {prefix}", flush=True)
    bare = None
    try:
        with Cluster(settings, workers=2) as cluster, Client(cluster.address, timeout=300) as client:
            cluster.wait_for_workers()
            bare = BareRq(args.redis_url, f"{prefix}-bare", workers=2)
            # -- latency: tiny network, one example, warm workers
            for _ in range(40):
                client.gradients(tiny, x1)
                bare.round_trip()
            svc = _pcts(_timed(lambda: client.gradients(tiny, x1), n_jobs))
            rq_ = _pcts(_timed(bare.round_trip, n_jobs))
            rows += [("latency, tiny job (10 nodes, B=1), service Compute: submit -> last chunk",
                      f"p50 {svc[0]:.2f} ms  p99 {svc[1]:.2f} ms", f"{n_jobs} jobs"),
                     ("latency, bare rq enqueue -> finished (SimpleWorker, trivial fn)",
                      f"p50 {rq_[0]:.2f} ms  p99 {rq_[1]:.2f} ms", f"{n_jobs} jobs"),
                     ("latency ratio service / bare rq (p50)", f"{svc[0] / rq_[0]:.2f}x", "")]
            _print_rows(rows[-3:])
            # -- throughput: 2 workers each side
            asyncio.run(_service_burst(cluster.address, tiny, x1, 50, args.concurrency))  # warm-up
            svc_s = asyncio.run(_service_burst(cluster.address, tiny, x1, n_burst, args.concurrency))
            bare.burst(50)
            rq_s = bare.burst(n_burst)
            rows += [("throughput, tiny jobs, service, 2 workers", f"{n_burst / svc_s:.0f} jobs/s",
                      f"{n_burst} jobs, {args.concurrency} in flight"),
                     ("throughput, bare rq, 2 SimpleWorkers", f"{n_burst / rq_s:.0f} jobs/s", f"{n_burst} jobs")]
            _print_rows(rows[-2:])
            # -- the big network: one job through the service vs the in-process call
            if not args.skip_big:
                rows += _big(client, width, args.batch, runs)
                _print_rows(rows[-4:])
    finally:
        if bare is not None:
            bare.stop()
        delete_namespace(settings)
    print()
    _print_rows(rows, header=True)
    return 0


def _big(client: Client, width: int, batch: int, runs: int) -> list[tuple[str, str, str]]:
    """The ~1M-edge network, batch ``batch``, mse: service job (registered once) vs in-process."""
    t0 = time.perf_counter()
    net = networks.irregular_dag(0, width=width)
    X, T = networks.batch(net, batch, 0)
    built = time.perf_counter() - t0
    t0 = time.perf_counter()
    client.register(net)
    registered = time.perf_counter() - t0
    call = dict(targets=T, loss="mse")
    local = edgegrad.gradients(net, X, **call)   # warm: compiles the plan here
    remote = client.gradients(net, X, **call)    # warm: compiles the plan in a worker
    if remote != local:
        raise RuntimeError("service result differs from the in-process result")
    # The other worker may take a job too: warm it as well, so no timed run pays a plan build.
    for _ in range(3):
        client.gradients(net, X, **call)
    svc = _timed(lambda: client.gradients(net, X, **call), runs)
    inp = _timed(lambda: edgegrad.gradients(net, X, **call), runs)
    what = f"{net.n_edges:,} edges, {net.n_nodes:,} nodes, B={batch}, mse"
    return [("big network: built / registered once", f"{built:.2f} s / {registered:.2f} s", what),
            ("big job through the service (min / median)", f"{min(svc) * 1e3:.0f} / {np.median(svc) * 1e3:.0f} ms",
             f"{runs} runs"),
            ("big job in-process edgegrad.gradients (min / median)",
             f"{min(inp) * 1e3:.0f} / {np.median(inp) * 1e3:.0f} ms", f"{runs} runs"),
            ("big job ratio service / in-process (min)", f"{min(svc) / min(inp):.2f}x", "bit-identical: yes")]


def _print_rows(rows: Sequence[tuple[str, str, str]], header: bool = False) -> None:
    width = max(len(r[0]) for r in rows)
    if header:
        print(f"{'measure'.ljust(width)}  {'result':<30}  notes")
        print("-" * (width + 42))
    for name, value, note in rows:
        print(f"{name.ljust(width)}  {value:<30}  {note}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
