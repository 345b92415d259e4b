"""Populations through the service: one population job against ``submit_many`` of P one-network jobs, with 1 and
2 workers (one engine thread each), networks not registered before, beside in-process ``gradients_many``.

    python -m benchmarks.population --service            # P = 1,000
    python -m benchmarks.population_service --networks 1000 --runs 2

Uses the Redis at ``REDIS_URL`` (default redis://127.0.0.1:6379/0) under a key prefix of its own, deleted after.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import edgegrad  # noqa: E402
from benchmarks.population_nets import neat_size_population, neat_size_rows  # noqa: E402
from edgegrad.client import Client  # noqa: E402
from edgegrad.jobs.namespace import delete_namespace  # noqa: E402
from edgegrad.server.cluster import Cluster  # noqa: E402
from edgegrad.settings import Settings  # noqa: E402

ROWS = 256


def _best(runs: int, make: Callable[[int], Any], timed: Callable[[Any], Any]) -> float:
    """Best wall time of ``timed(make(i))`` over ``runs`` repetitions (``make`` outside the clock)."""
    best = float("inf")
    for i in range(runs):
        data = make(i)
        start = time.perf_counter()
        timed(data)
        best = min(best, time.perf_counter() - start)
    return best


def bench_service(count: int, runs: int, batching: tuple[str, ...] = ("off", "on")) -> None:
    """Print one line per worker count: population job (service's shards, and 4 shards), submit_many (with small-job
    batching off, then on), in-process, and a fine-tuning step (the same topologies with new weights: only the
    weights travel; the service's shards)."""
    X, T = neat_size_rows(0, ROWS)
    seeds = iter(range(7_000_000, 8_000_000))

    def fresh(_: int) -> list[edgegrad.Network]:
        """A population never built before in this run (no side finds its networks registered or decoded)."""
        return neat_size_population(next(seeds), count)

    edgegrad.gradients_many(neat_size_population(99, 8), X, T, loss="mse")   # numba's load, outside the clock
    inproc = _best(runs, fresh, lambda nets: edgegrad.gradients_many(nets, X, T, loss="mse"))
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    for workers in (1, 2):
        one = sharded = step = float("nan")
        jobs: dict[str, float] = {}
        for mode in batching:
            tag = f"popbench-{secrets.token_hex(4)}"
            settings = Settings.from_env(redis_url=url, key_prefix=tag, queue=tag, threads=1,
                                         batch_max_jobs=None if mode == "on" else 1)
            try:
                with Cluster(settings, workers=workers) as cluster, Client(cluster.address, timeout=600) as client:
                    cluster.wait_for_workers()
                    for _ in range(4 * workers):  # every worker loads the kernel before anything is timed
                        client.gradients_many(neat_size_population(99, 8), X, T, loss="mse", shard_networks=1)
                        client.submit_many([dict(net=n, inputs=X, targets=T, loss="mse")
                                            for n in neat_size_population(98, 4)])
                    if mode == batching[0]:  # the population job does not depend on small-job batching
                        one = _best(runs, fresh, lambda nets: client.gradients_many(nets, X, T, loss="mse"))
                        sharded = _best(runs, fresh, lambda nets: client.gradients_many(
                            nets, X, T, loss="mse", shard_networks=-(-len(nets) // 4)))
                        base = fresh(0)
                        client.gradients_many(base, X, T, loss="mse")
                        step = _best(runs, lambda i, base=base: [n.with_parameters(n.weights * (1.0 + 0.01 * (i + 1)))
                                                                 for n in base],
                                     lambda nets: client.gradients_many(nets, X, T, loss="mse"))
                    jobs[mode] = _best(runs, fresh, lambda nets: edgegrad.wait_all(client.submit_many(
                        [dict(net=n, inputs=X, targets=T, loss="mse") for n in nets])))
            finally:
                delete_namespace(settings)
        best = min(one, sharded)
        many = " | ".join(f"submit_many of {count} jobs, batching {m}: {t:7.3f} s = {t / best:6.1f}x"
                          for m, t in jobs.items())
        print(f"P={count}, {workers} worker(s): one population job {one:7.3f} s (service's shards),"
              f" {sharded:7.3f} s (4 shards) | {many}"
              f" | in-process gradients_many {inproc:7.3f} s ({best / inproc:.1f}x of it)"
              f" | a fine-tuning step (new weights, service's shards) {step:7.3f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", type=int, default=1000, help="P (default 1000)")
    parser.add_argument("--runs", type=int, default=3, help="repetitions, best taken (default 3)")
    parser.add_argument("--batching", nargs="+", choices=("off", "on"), default=["off", "on"],
                        help="small-job batching for the submit_many baseline (default: off, then on)")
    args = parser.parse_args(argv)
    print(f"float64, B={ROWS}, mse mean, networks not registered before, best of {args.runs}, {os.cpu_count()} CPUs")
    bench_service(args.networks, args.runs, tuple(args.batching))


if __name__ == "__main__":
    main()
