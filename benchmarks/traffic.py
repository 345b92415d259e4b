"""Service load: watch streams and submitters against `edgegrad up --workers 2` on loopback, for a while.

    python -m benchmarks.traffic                       # 200 watch streams + 20 submitters for 60 s
    python -m benchmarks.traffic --seconds 10 --watchers 20 --submitters 4   # a quick look

`edgegrad up` runs on the Redis at ``--redis-url`` / ``REDIS_URL`` (default 127.0.0.1:6379) in a key
prefix and queue of its own, with short TTLs (results kept ``--result-ttl`` seconds), all deleted at
the end. Submitters each loop submit → wait on a tiny job (submit latency is the time ``submit``
takes); watchers each loop ``WatchJob`` on the newest job to its end. Reported: errors, jobs,
submit p50/p99, the server's RSS before and after, and once every job's TTL has passed, the
namespace's Redis key count and memory (``MEMORY USAGE`` of each key) and Redis's ``used_memory``.
Nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import secrets
import subprocess
import sys
import threading
import time

if __package__ in (None, ""):                         # run as a script: python benchmarks/traffic.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "benchmarks"

import numpy as np
import psutil

from edgegrad.client import AsyncClient
from edgegrad.jobs.connections import sync_redis
from edgegrad.jobs.record import RQ_RECORD_TTL
from edgegrad.server.cluster import delete_namespace
from edgegrad.settings import Settings

from . import networks

__all__ = ["main"]


def _start_up(settings: Settings, workers: int, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "edgegrad", "up", "--port", "0", "--workers", str(workers),
                             "--redis-url", settings.redis_url], env=env, stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    line = proc.stdout.readline()
    match = re.match(r"edgegrad listening on (\S+:\d+) ", line)
    if not match:
        proc.kill()
        raise SystemExit(f"edgegrad up did not start: {line!r}")
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return proc, match.group(1)


def _server_rss(up: subprocess.Popen) -> int:
    for child in psutil.Process(up.pid).children(recursive=True):
        if "server" in child.cmdline():
            return child.memory_info().rss
    return 0


async def _load(address: str, seconds: float, n_watchers: int, n_submitters: int) -> dict:
    net = networks.tiny()
    x = np.random.default_rng(0).normal(size=(4, net.n_inputs))
    recent: collections.deque[str] = collections.deque(maxlen=64)
    latencies: list[float] = []
    errors: collections.Counter = collections.Counter()
    counts = collections.Counter()
    end = time.monotonic() + seconds
    clients = [AsyncClient(address, timeout=60) for _ in range(1 + max(1, n_watchers // 50))]

    async def submitter(client: AsyncClient) -> None:
        while time.monotonic() < end:
            try:
                start = time.perf_counter()
                handle = await client.submit(net, x)
                latencies.append(time.perf_counter() - start)
                recent.append(handle.name)
                await handle.wait()
                counts["jobs"] += 1
            except Exception as exc:  # counted, the loop goes on
                errors[f"submit {type(exc).__name__}: {str(exc)[:80]}"] += 1

    async def watcher(client: AsyncClient) -> None:
        while time.monotonic() < end:
            if not recent:
                await asyncio.sleep(0.01)
                continue
            try:
                await client.job(recent[-1]).wait()
                counts["watches"] += 1
            except Exception as exc:
                errors[f"watch {type(exc).__name__}: {str(exc)[:80]}"] += 1

    try:
        await clients[0].register(net)
        tasks = [submitter(clients[0]) for _ in range(n_submitters)]
        tasks += [watcher(clients[1 + i % (len(clients) - 1)]) for i in range(n_watchers)]
        await asyncio.gather(*tasks)
    finally:
        for client in clients:
            await client.close()
    return {"latencies": latencies, "errors": errors, "counts": counts}


def _namespace_keys(settings: Settings) -> dict[str, float]:
    """Keys and bytes (MEMORY USAGE) of the namespace: edgegrad's prefix and rq's keys of its queue and jobs;
    also per live job, edgegrad's (job record + stream) and rq's (job record + result) apart."""
    r = sync_redis(settings)
    try:
        ours = set(r.scan_iter(match=f"{settings.key_prefix}:*", count=1000))
        theirs = set(r.scan_iter(match=f"rq:*{settings.queue}*", count=1000))
        rq_ids = {m.decode() for m in r.zrange(f"rq:finished:{settings.queue}", 0, -1)}  # rq's own records
        rq_ids |= {f"{k.decode().rsplit(':', 1)[1]}-0" for k in ours if k.count(b":") == 2 and b":job:" in k}
        theirs |= {k for j in rq_ids for k in (f"rq:job:{j}".encode(), f"rq:results:{j}".encode()) if r.exists(k)}
        size = {k: r.memory_usage(k) or 0 for k in ours | theirs}
        records = [k for k in ours if k.count(b":") == 2 and b":job:" in k]
        rq_records = [k for k in theirs if k.startswith(b"rq:job:")]
        job_bytes = sum(size[k] + size.get(k + b":events", 0) for k in records)
        rq_bytes = sum(size[k] + size.get(k.replace(b"rq:job:", b"rq:results:"), 0) for k in rq_records)
        return {"keys": len(size), "bytes": sum(size.values()), "jobs": len(records), "rq_jobs": len(rq_records),
                "per_job": job_bytes / max(1, len(records)), "per_rq_job": rq_bytes / max(1, len(rq_records))}
    finally:
        r.close()


def main(argv: list[str] | None = None) -> int:
    """Run the load and print the figures."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--watchers", type=int, default=200)
    p.add_argument("--submitters", type=int, default=20)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--result-ttl", type=int, default=10, help="seconds finished jobs are kept (short, to see them go)")
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = p.parse_args(argv)
    token = f"egbench-traffic-{secrets.token_hex(4)}"
    settings = Settings.from_env(redis_url=args.redis_url, key_prefix=token, queue=token,
                                 result_ttl=args.result_ttl, job_ttl=max(60, 3 * args.result_ttl))
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEGRAD_")}
    env.update(EDGEGRAD_KEY_PREFIX=token, EDGEGRAD_QUEUE=token, EDGEGRAD_RESULT_TTL=str(settings.result_ttl),
               EDGEGRAD_JOB_TTL=str(settings.job_ttl))
    r = sync_redis(settings)
    up, address = _start_up(settings, args.workers, env)
    try:
        rss_before = _server_rss(up)
        print(f"edgegrad up at {address} ({args.workers} workers); {args.watchers} watchers, {args.submitters}"
              f" submitters, {args.seconds:.0f} s; load average {os.getloadavg()[0]:.2f}", flush=True)
        out = asyncio.run(_load(address, args.seconds, args.watchers, args.submitters))
        rss_after = _server_rss(up)
        lat = np.array(out["latencies"]) * 1000
        print(f"jobs {out['counts']['jobs']} ({out['counts']['jobs'] / args.seconds:.0f}/s), watch streams"
              f" completed {out['counts']['watches']}, errors {sum(out['errors'].values())}"
              f" {dict(out['errors']) if out['errors'] else ''}")
        if lat.size:
            print(f"submit latency p50 {np.percentile(lat, 50):.1f} ms, p99 {np.percentile(lat, 99):.1f} ms")
        print(f"server RSS before {rss_before / 2**20:.1f} MiB, after {rss_after / 2**20:.1f} MiB")
        now = _namespace_keys(settings)
        print(f"right after: {now['keys']} keys, {now['bytes'] / 2**20:.1f} MiB in the namespace; {now['jobs']} job"
              f" records of {now['per_job']:.0f} bytes each (record + stream), {now['rq_jobs']} of rq's of"
              f" {now['per_rq_job']:.0f} bytes (record + result)")
        time.sleep(settings.result_ttl + 2)
        asyncio.run(_load(address, 0.5, 0, 1))  # one more submission trims the job index
        time.sleep(max(settings.result_ttl, RQ_RECORD_TTL) + 2)
        left = _namespace_keys(settings)
        print(f"after the TTLs: {left['keys']} keys, {left['bytes'] / 2**10:.1f} KiB in the namespace (networks,"
              f" workers, the last jobs); Redis used_memory {r.info('memory')['used_memory'] / 2**20:.1f} MiB"
              f" (shared with whatever else uses it); load average {os.getloadavg()[0]:.2f}")
    finally:
        up.terminate()
        try:
            up.wait(30)
        except subprocess.TimeoutExpired:
            up.kill()
        delete_namespace(settings)
        r.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
