"""A non-forking rq worker that keeps the engine's plan cache, heartbeats while it computes,
reads only JSON from Redis and runs only edgegrad's job functions."""

from __future__ import annotations

import threading
import time
from typing import Any

from rq import Queue, SimpleWorker
from rq.exceptions import AbandonedJobError
from rq.job import Job
from rq.serializers import JSONSerializer

from edgegrad import events
from edgegrad.jobs.contract import FAILED
from edgegrad.jobs.record import RQ_RECORD_TTL, error_fields
from edgegrad.jobs.tenants import DEFAULT_TENANT
from edgegrad.settings import Settings

from .jobs import ALLOWED_FUNCTIONS, get_store

__all__ = ["EdgegradWorker", "make_worker", "end_abandoned_job", "refusal"]

#: seconds within which a second rq worker heartbeat is skipped
HEARTBEAT_MIN_GAP = 1.0


class EdgegradWorker(SimpleWorker):
    """SimpleWorker plus a heartbeat thread during jobs and an allow-list of job functions.

    A SIGKILLed worker stops heartbeating; ``job_heartbeat_ttl`` seconds later its job counts
    as abandoned, and the next registry clean-up (every ``maintenance_interval`` seconds, by any
    worker) re-enqueues it while it has retries left.
    """

    job_heartbeat_ttl: int = Settings.job_heartbeat_ttl

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._beat_lock = threading.Lock()
        self._beat_thread: threading.Thread | None = None
        self._beating: tuple[Job, Any] | None = None  #: (job, execution) while one runs
        self._last_beat = float("-inf")

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        """rq's worker heartbeat, in one round trip and at most once per HEARTBEAT_MIN_GAP seconds.

        rq beats several times per job, each time as three separate commands; the worker key
        lives for over a minute, so a beat less than a second after the last one adds nothing.
        Beats that ride in a caller's pipeline cost no round trip and always go through.
        """
        if pipeline is not None:
            super().heartbeat(timeout, pipeline=pipeline)
            return
        moment = time.monotonic()
        if moment - self._last_beat < HEARTBEAT_MIN_GAP:
            return
        self._last_beat = moment
        with self.connection.pipeline(transaction=False) as pipe:
            super().heartbeat(timeout, pipeline=pipe)
            pipe.execute()

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        """A short TTL, kept alive by the heartbeat thread, so dead workers are noticed quickly."""
        return max(2, int(self.job_heartbeat_ttl))

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Refuse foreign functions; run ours in this process with heartbeats alongside."""
        reason = refusal(job)
        if reason is not None:
            self.log.error("refusing job %s: %s", job.id, reason)
            # nothing of the job's own may run on the way out either: no callback, no webhook
            job.webhooks = []
            job._success_callback_name = job._failure_callback_name = job._stopped_callback_name = None
            execution = self.prepare_execution(job)
            job.retries_left = 0
            self.handle_job_failure(job, queue, exc_string=f"refused: {reason}", execution=execution)
            return
        execution = self.prepare_execution(job)
        self._beat_for(job, execution)
        try:
            self.perform_job(job, queue, execution)
        finally:
            self._beat_for(None, None)
        self.set_state("idle")

    def _beat_for(self, job: Job | None, execution: Any) -> None:
        """Point the heartbeat thread at the running job (None: no job); start it once."""
        with self._beat_lock:
            self._beating = (job, execution) if job is not None else None
            if self._beat_thread is None:
                self._beat_thread = threading.Thread(target=self._beat, daemon=True, name="edgegrad-heartbeat")
                self._beat_thread.start()

    def _beat(self) -> None:
        """Keep the running job's heartbeat fresh (one thread for the worker's life, not one per job)."""
        interval = max(0.5, self.get_heartbeat_ttl(None) / 3)  # type: ignore[arg-type]
        while True:
            time.sleep(interval)
            with self._beat_lock:
                current = self._beating
            if current is None:
                continue
            try:
                self.maintain_heartbeats(*current)
            except Exception:  # a missed beat is retried on the next tick
                self.log.warning("heartbeat for job %s failed", current[0].id, exc_info=True)


def refusal(job: Job) -> str | None:
    """Why a worker must not run ``job``, or None: only edgegrad's job function, with nothing attached."""
    if job.func_name not in ALLOWED_FUNCTIONS:
        return f"{job.func_name!r} is not an edgegrad job function"
    if job._success_callback_name or job._failure_callback_name or job._stopped_callback_name or job.webhooks:
        return "edgegrad jobs carry no callbacks or webhooks"
    return None


def end_abandoned_job(job: Job, exc_type: type, exc_value: BaseException, traceback: Any) -> bool:
    """rq exception handler: a job whose worker died and that rq will not retry ends FAILED.

    rq's registry clean-up calls this for every abandoned job, retried or not; without it a job
    whose retries are used up would stay RUNNING in edgegrad's record until its TTL.
    """
    if exc_type is AbandonedJobError and not (job.retries_left and job.retries_left > 0):
        args = list(job.args or [job.id])
        job_id, shard = args[0], args[1] if len(args) > 1 else 0
        tenant = args[2] if len(args) > 2 else DEFAULT_TENANT
        store = get_store().for_tenant(tenant)
        reason = f"the worker running shard {shard} of this job stopped (killed or lost) and no retries are left"
        events.job_ended(store.fail(job_id, FAILED, error_fields("ABORTED", reason)), store, job_id, shard,
                         reason=reason)
    return True  # let other handlers run


def make_worker(settings: Settings, connection, name: str | None = None) -> EdgegradWorker:
    """A worker on the configured queue, tuned from ``settings``."""
    queue = Queue(settings.queue, connection=connection, serializer=JSONSerializer)
    worker = EdgegradWorker([queue], name=name, connection=connection, serializer=JSONSerializer,
                            worker_ttl=max(16, settings.worker_ttl), maintenance_interval=settings.maintenance_interval,
                            job_monitoring_interval=max(1, settings.job_heartbeat_ttl // 3), default_result_ttl=RQ_RECORD_TTL)
    worker.job_heartbeat_ttl = settings.job_heartbeat_ttl
    worker.push_exc_handler(end_abandoned_job)
    return worker
