"""How long a SIGKILLed worker's job takes to complete elsewhere, with the service's default timings.

    python -m benchmarks.recovery            # 3 trials, ~1-2 minutes

A local cluster (one server, two workers; Redis at REDIS_URL or 127.0.0.1:6379, in a namespace of
its own, deleted at the end) runs a job of a few seconds; once a worker reports it RUNNING, that
worker gets SIGKILL. Printed: seconds from the kill until the job's final SUCCEEDED message, the
attempt that finished it, and whether the result equals the in-process call bit for bit.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from collections.abc import Sequence

if __package__ in (None, ""):                         # run as a script: python benchmarks/recovery.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "benchmarks"

import numpy as np

import edgegrad
from edgegrad.client import Client
from edgegrad.jobs.namespace import delete_namespace
from edgegrad.server.cluster import Cluster
from edgegrad.settings import Settings
from edgegrad.v1 import job_pb2

from . import networks


def trial(cluster: Cluster, client: Client, net: edgegrad.Network, x: np.ndarray, t: np.ndarray) -> tuple[float, int, bool]:
    """Kill the worker running one job; (seconds until it succeeded, its attempt, bit-identical)."""
    handle = client.submit(net, x, targets=t, loss="mse")
    deadline = time.monotonic() + 60
    victim = ""
    while not victim and time.monotonic() < deadline:
        job = client.get_job(handle.name)
        if job.state == job_pb2.JOB_STATE_RUNNING and job.worker:
            victim = job.worker
        else:
            time.sleep(0.02)
    if not victim:
        raise RuntimeError("the job never started")
    index = next(i for i in range(len(cluster.workers)) if cluster.worker_name(i) == victim)
    cluster.kill_worker(index)
    killed = time.monotonic()
    cluster.add_worker()
    result = handle.result(timeout=120)
    elapsed = time.monotonic() - killed
    attempt = client.get_job(handle.name).attempt
    same = result == edgegrad.gradients(net, x, targets=t, loss="mse")
    return elapsed, attempt, same


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args(argv)
    prefix = f"egrecover-{secrets.token_hex(4)}"
    settings = Settings.from_env(redis_url=args.redis_url, key_prefix=prefix, queue=prefix)
    print(f"defaults: job heartbeat TTL {settings.job_heartbeat_ttl} s, maintenance every "
          f"{settings.maintenance_interval} s, worker TTL {settings.worker_ttl} s, retries {settings.job_retries}")
    net = networks.irregular_dag(seed=3, width=3000)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2048, net.n_inputs))
    t = rng.normal(size=(2048, net.n_outputs))
    try:
        with Cluster(settings, workers=2) as cluster, Client(cluster.address) as client:
            cluster.wait_for_workers()
            for i in range(args.trials):
                elapsed, attempt, same = trial(cluster, client, net, x, t)
                print(f"trial {i + 1}: completed {elapsed:.1f} s after SIGKILL (attempt {attempt}),"
                      f" bit-identical: {'yes' if same else 'NO'}", flush=True)
    finally:
        delete_namespace(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
