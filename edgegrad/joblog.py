"""The job log: each moment of a job's life updates the Prometheus metrics and writes one log line (``edgegrad.jobs``).

Server: submitted, cancelled. Worker: started and shard_done (per shard), finished or failed (by the
worker that ends the job, with reason, duration, rows and bytes). The server and the workers call one
function here per moment; nothing here runs per element or per chunk, and nothing here reads Redis.
(A job's *events*, the JobEvents of its Redis stream, are another thing: ``jobs/stream.py``.)
"""

from __future__ import annotations

import logging
import time
from typing import Any

from . import metrics
from .jobs.contract import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, state_name, stored
from .logs import EVENT_ATTR, JOB_LOGGER

__all__ = ["job_submitted", "job_cancelled", "begin_shard", "shard_done",
           "job_ended", "STATE_NAMES"]

log = logging.getLogger(JOB_LOGGER)

#: job states as stored -> the names metrics and logs use
STATE_NAMES = {stored(s): state_name(s) for s in (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)}


def _write(event: str, job_id: str, tenant: str, **fields: Any) -> None:
    shown = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in fields.items() if v is not None}
    record = {"event": event, "job": f"jobs/{job_id}", "tenant": tenant, **shown}
    text = " ".join(f"{k}={_quoted(v)}" for k, v in shown.items())
    log.info(f"job {event} jobs/{job_id} tenant={tenant} {text}".rstrip(), extra={EVENT_ATTR: record})


def _quoted(value: Any) -> str:
    text = str(value)
    return f'"{text}"' if (" " in text or not text) else text


# ------------------------------------------------------------------ server
def job_submitted(job_id: str, tenant: str, rows: int, shards: int, result_bytes: int) -> None:
    """``tenant``'s job was created (not a repeat of a request_id)."""
    metrics.JOBS_SUBMITTED.labels(tenant).inc()
    metrics.SHARDS_ENQUEUED.inc(shards)
    _write("submitted", job_id, tenant, rows=rows, shards=shards, result_bytes=result_bytes)


def job_cancelled(job: Any, tenant: str) -> None:
    """A queued or running job of ``tenant`` was cancelled by request (``job``: the Job after the cancel)."""
    duration = max(0.0, job.end_time.ToNanoseconds() / 1e9 - job.create_time.ToNanoseconds() / 1e9)
    metrics.JOBS_FINISHED.labels("cancelled", tenant).inc()
    metrics.JOB_DURATION.labels("cancelled").observe(duration)
    _write("cancelled", job.name.split("/", 1)[-1], tenant, duration_s=duration, rows=int(job.layout.batch),
           reason="cancelled by request")


# ------------------------------------------------------------------ worker
class _Shard:
    """The shard this worker process is running (one at a time)."""

    def __init__(self, job_id: str, shard: int, tenant: str, created: float, worker: str) -> None:
        self.job_id, self.shard, self.tenant, self.created, self.worker = job_id, shard, tenant, created, worker
        self.began = time.monotonic()


_current: _Shard | None = None


def begin_shard(store: Any, job_id: str, shard: int, attempt: int, kind: str, created: float) -> _Shard:
    """A worker started a shard (``kind`` "run") or the fold of a job's shards ("fold"); ``created``: submit time.

    It is the running shard until ``end_shard``; a worker running several jobs together (a batch of
    small ones) passes what this returns to ``shard_done`` and ``job_ended`` instead."""
    global _current
    tenant = store.keys.tenant
    _current = _Shard(job_id, shard, tenant, created, store.name)
    wait = _queue_wait()
    if wait is not None:
        metrics.QUEUE_WAIT.observe(wait)
    _write("started", job_id, tenant, shard=shard, attempt=attempt, worker=store.name, queue_wait_s=wait,
           fold=True if kind == "fold" else None)
    return _current


def _queue_wait() -> float | None:
    """Seconds the running rq job waited between enqueue and start (None outside an rq worker)."""
    try:
        from rq import get_current_job

        job = get_current_job()
    except Exception:
        return None
    if job is None or job.enqueued_at is None or job.started_at is None:
        return None
    return max(0.0, (job.started_at - job.enqueued_at).total_seconds())


def shard_done(rows: int, nbytes: int, shard: _Shard | None = None) -> None:
    """The running shard (or ``shard``) wrote all its chunks (``rows`` rows, ``nbytes`` bytes of result)."""
    shard = shard or _current
    if shard is None:
        return
    seconds = time.monotonic() - shard.began
    metrics.SHARDS.labels("done").inc()
    metrics.ROWS.inc(rows)
    metrics.RESULT_BYTES_WRITTEN.inc(nbytes)
    metrics.SHARD_RUN.observe(seconds)
    _write("shard_done", shard.job_id, shard.tenant, shard=shard.shard, rows=rows, bytes=nbytes,
           duration_s=seconds, worker=shard.worker)


def job_ended(state: str, store: Any, job_id: str, shard: int | None, *, reason: str = "",
              rows: int | None = None, nbytes: int | None = None, began: _Shard | None = None) -> None:
    """This worker ended a job: ``state`` as FINISH answered it (stored: SUCCEEDED, FAILED, CANCELLED);
    ``began``: what ``begin_shard`` returned for it, when it is not the running shard."""
    name = STATE_NAMES.get(state)
    if name not in ("succeeded", "failed"):
        return  # ended before this call ("was N": by another shard, or cancelled by the server) or deleted
    current = began or _current
    if current is not None and job_id == current.job_id:
        tenant, created = current.tenant, current.created
    else:  # before its shard started, or a job abandoned by a dead worker
        tenant, created = store.keys.tenant, store.created(job_id)
    duration = max(0.0, time.time() - created) if created else None
    metrics.JOBS_FINISHED.labels(name, tenant).inc()
    if duration is not None:
        metrics.JOB_DURATION.labels(name).observe(duration)
    if name == "failed":
        metrics.SHARDS.labels("failed").inc()
    _write("finished" if name == "succeeded" else "failed", job_id, tenant, state=name, shard=shard,
           reason=reason or None, duration_s=duration, rows=rows, bytes=nbytes)


def end_shard() -> None:
    """The worker is done with its shard (whatever happened)."""
    global _current
    _current = None
