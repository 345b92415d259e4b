"""Prometheus metrics of the server and the workers, and the HTTP endpoint that serves them.

Every process serves its own ``/metrics`` (``EDGEGRAD_METRICS_PORT``); ``edgegrad up`` gives the
server that port and its workers the next ones. Metrics are updated per job, shard or chunk, never
per element. docs/operations.md lists every metric.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterable

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, disable_created_metrics, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .errors import InvalidInput
from .settings import ENV_NAMES, Settings

__all__ = ["JOBS_SUBMITTED", "JOBS_FINISHED", "SHARDS_ENQUEUED", "SHARDS", "QUEUE_WAIT", "SHARD_RUN",
           "JOB_DURATION", "ROWS", "BATCH_SIZE", "RESULT_BYTES_WRITTEN", "RESULT_BYTES_STREAMED", "OPEN_STREAMS",
           "metrics_port", "process_ports", "serve_metrics", "metrics_url"]

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

# server
JOBS_SUBMITTED = Counter("edgegrad_jobs_submitted", "Jobs accepted by SubmitJob, SubmitJobs or Compute "
                         "(a repeated request_id counts once)", ["tenant"])
SHARDS_ENQUEUED = Counter("edgegrad_shards_enqueued", "Shards enqueued for submitted jobs (an rq job each, or a small job's place in its lane)")
RESULT_BYTES_STREAMED = Counter("edgegrad_result_bytes_streamed", "Result chunk bytes sent to clients on "
                                "WatchJob and Compute streams")
OPEN_STREAMS = Gauge("edgegrad_open_streams", "WatchJob and Compute streams open on this server")
# both: a job ends on the worker that finishes it (succeeded, failed) or on the server (cancelled)
JOBS_FINISHED = Counter("edgegrad_jobs_finished", "Jobs that ended, by final state", ["state", "tenant"])
JOB_DURATION = Histogram("edgegrad_job_duration_seconds", "Time from submission to the end of a job, by final"
                         " state", ["state"], buckets=_SECONDS)
# workers
SHARDS = Counter("edgegrad_shards", "Shards a worker ran to the end: done (its chunks written) or failed",
                 ["outcome"])
QUEUE_WAIT = Histogram("edgegrad_queue_wait_seconds", "Time a shard waited in the queue before a worker"
                       " started it", buckets=_SECONDS)
SHARD_RUN = Histogram("edgegrad_shard_run_seconds", "Time a worker spent on a shard: read rows, compute,"
                      " write its chunks", buckets=_SECONDS)
ROWS = Counter("edgegrad_rows", "Batch rows computed by this worker")
BATCH_SIZE = Histogram("edgegrad_batch_size", "Small jobs a worker took together and ran as one engine call (a"
                       " batch); _sum / _count is jobs per batch", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
RESULT_BYTES_WRITTEN = Counter("edgegrad_result_bytes_written", "Result bytes this worker computed and wrote"
                               " to Redis")


class _PlanCacheCollector:
    """The engine's plan-cache counters, read when scraped (the engine itself knows nothing of Prometheus)."""

    def collect(self) -> Iterable:
        from .engine.plan import plan_cache_stats

        hits, misses, size = plan_cache_stats()
        yield CounterMetricFamily("edgegrad_plan_cache_hits", "Compiled-plan cache hits", value=hits)
        yield CounterMetricFamily("edgegrad_plan_cache_misses", "Compiled-plan cache misses (plans compiled)",
                                  value=misses)
        yield GaugeMetricFamily("edgegrad_plan_cache_plans", "Plans held in the cache", value=size)


REGISTRY.register(_PlanCacheCollector())


def metrics_port(settings: Settings) -> int | None:
    """The configured metrics port (0: a free one), or None when metrics are off."""
    text = settings.metrics_port.strip()
    if not text:
        return None
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port < 65536:
        raise InvalidInput(f"{ENV_NAMES['metrics_port']}: expected a port 0..65535 (or empty: no metrics),"
                           f" got {settings.metrics_port!r}")
    return port


def process_ports(settings: Settings, processes: int) -> list[int]:
    """Ports for ``processes`` processes on one host (``edgegrad up``): the configured port and the next
    ones, or free ports when it is 0; [] when metrics are off."""
    base = metrics_port(settings)
    if base is None:
        return []
    if base:
        if base + processes - 1 > 65535:
            raise InvalidInput(f"{ENV_NAMES['metrics_port']}: {base}..{base + processes - 1} runs past 65535")
        return list(range(base, base + processes))
    with contextlib.ExitStack() as stack:  # hold every socket until all are chosen: no port twice
        socks = [stack.enter_context(socket.socket(socket.AF_INET6 if ":" in settings.metrics_host
                                                   else socket.AF_INET)) for _ in range(processes)]
        for sock in socks:
            sock.bind((settings.metrics_host or "0.0.0.0", 0))
        return [sock.getsockname()[1] for sock in socks]


def serve_metrics(settings: Settings) -> str | None:
    """Serve /metrics in a daemon thread when configured; returns its URL (None when off)."""
    port = metrics_port(settings)
    if port is None:
        return None
    host = settings.metrics_host or "0.0.0.0"
    disable_created_metrics()  # no *_created series next to every counter of this process
    try:
        server, _ = start_http_server(port, addr=host)
    except OSError as exc:
        raise InvalidInput(f"{ENV_NAMES['metrics_port']}: cannot listen on {host}:{port}"
                           f" ({exc.strerror or exc})") from None
    return metrics_url(host, server.server_port)


def metrics_url(host: str, port: int) -> str:
    """The URL a local scraper reads the /metrics of ``host:port`` at (all interfaces: 127.0.0.1)."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "", "::") else (f"[{host}]" if ":" in host else host)
    return f"http://{shown}:{port}/metrics"
