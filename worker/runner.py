"""A non-forking rq worker that keeps the engine's plan cache, heartbeats while it computes,
reads only JSON from Redis and runs only edgegrad's job functions."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from rq import Queue, SimpleWorker
from rq.exceptions import AbandonedJobError, StopRequested
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from rq.timeouts import JobTimeoutException
from rq.utils import now as rq_now
from rq.utils import utcformat
from rq.worker import WorkerStatus

from edgegrad.errors import bounded
from edgegrad.jobs.contract import BATCH_FUNCTION, JOB_FUNCTION
from edgegrad.jobs.record import FOLD_SHARD, RQ_RECORD_TTL, rq_job_id, rq_job_options
from edgegrad.settings import Settings

from .batch import abandon_batch, take_with
from .jobs import ALLOWED_FUNCTIONS, fail_shard, get_store, job_args, start_with
from .outage import REDIS_DOWN, Outage

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
    _failure_ttl: int = Settings.result_ttl  #: seconds a refused or unreadable entry stays in rq's failed registry

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._beat_lock = threading.Lock()
        self._beat_thread: threading.Thread | None = None
        self._beating: tuple[Job, Any] | None = None  #: (job, execution) while one runs
        self._last_beat = float("-inf")
        self._last_suspension_check = float("-inf")
        self.outage = Outage(self.connection, self.log)
        self.log.addFilter(self.outage.quiet_filter())

    # ------------------------------------------------- riding out Redis outages (rq's loop would quit)
    def _ride_out(self, exc: BaseException) -> None:
        """Wait until Redis answers again (or a stop is requested), then let the work loop carry on."""
        self.outage.wait(exc, stop=lambda: self._stop_requested)
        self._back()

    def _back(self) -> None:
        """After an outage: register again if Redis lost this worker (a restart without its data)."""
        try:
            if not self.connection.exists(self.key):
                self.register_birth()  # redis-py's pubsub thread subscribes again by itself
        except REDIS_DOWN as exc:
            self.outage.noticed(exc)
        except ValueError:  # registered meanwhile
            pass

    def check_for_suspension(self, burst: bool) -> None:
        """rq's check (``rq suspend``) at most once per HEARTBEAT_MIN_GAP seconds, waiting out an unreachable Redis.

        rq looks before every job, in a round trip of its own; a suspension that takes effect
        within a second is what ``rq suspend`` promises a busy worker anyway.
        """
        moment = time.monotonic()
        if moment - self._last_suspension_check < HEARTBEAT_MIN_GAP:
            return
        self._last_suspension_check = moment
        try:
            super().check_for_suspension(burst)
        except REDIS_DOWN as exc:
            self._ride_out(exc)

    def set_state(self, state: str, pipeline: Any = None) -> None:
        """rq's worker state, not written again when it is already the state written last (idle after idle)."""
        if pipeline is None and state == self._state:
            return
        super().set_state(state, pipeline=pipeline)

    def run_maintenance_tasks(self) -> None:
        """rq's registry clean-up; Redis down is waited out, any other failure logged and retried next time."""
        try:
            super().run_maintenance_tasks()
        except REDIS_DOWN as exc:
            self._ride_out(exc)
        except StopRequested:  # a SIGTERM that landed inside the clean-up: rq's own way out
            raise
        except Exception:
            # not again at once; rq's BaseWorker sets it None unannotated, so its inferred type is None alone
            self.last_cleaned_at = rq_now()  # type: ignore[assignment]
            self.log.exception("registry clean-up failed; trying again in %s s", self.maintenance_interval)

    def _pubsub_exception_handler(self, exc: Exception, pubsub: Any, pubsub_thread: Any) -> None:
        """rq's pubsub thread: reconnect quietly (one warning per outage, from the outage)."""
        if isinstance(exc, REDIS_DOWN):
            self.outage.noticed(exc)
            time.sleep(2.0)
            return
        super()._pubsub_exception_handler(exc, pubsub, pubsub_thread)

    def request_stop(self, signum: int, frame: Any) -> None:
        """rq's warm shutdown (SIGTERM, SIGINT), the request also remembered: a StopRequested raised from
        the handler can be lost in a blocking Redis read, and the work loop then stops at its next turn."""
        self._stop_requested = True
        super().request_stop(signum, frame)

    def teardown(self) -> None:
        """rq's unregistering on the way out; with Redis down the worker key simply expires."""
        try:
            super().teardown()
        except REDIS_DOWN as exc:
            self.log.warning("worker %s: redis unreachable on exit (%s); its registration expires by itself",
                             self.name, bounded(str(exc)))

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
        try:
            with self.connection.pipeline(transaction=False) as pipe:
                super().heartbeat(timeout, pipeline=pipe)
                pipe.execute()
        except REDIS_DOWN as exc:
            self._ride_out(exc)
            return
        if self.outage.recovered():  # rq's own dequeue loop reconnected
            self._back()

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        """A short TTL, kept alive by the heartbeat thread, so dead workers are noticed quickly."""
        return max(2, int(self.job_heartbeat_ttl))

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None
                                     ) -> tuple[Job, Queue] | None:
        """rq's dequeue, except that an entry rq cannot read (a broken job hash) is dropped, not fatal."""
        while True:
            try:
                return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
            except REDIS_DOWN as exc:  # before rq's own retrying part of the loop
                self._ride_out(exc)
            except Exception as exc:  # rq attaches the entry's id to a failed fetch; anything else is ours
                job_id = getattr(exc, "job_id", None)
                if job_id is None:
                    raise
                self._drop_unreadable(str(job_id), getattr(exc, "queue", None), exc)

    def _drop_unreadable(self, job_id: str, queue: Queue | None, exc: BaseException) -> None:
        """Log an unreadable queue entry and list it as failed (its hash is left as it is)."""
        self.log.error("dropping queue entry %s: rq cannot read its job (%s: %s)", job_id, type(exc).__name__,
                       bounded(str(exc)))
        if queue is not None:
            self.connection.zadd(queue.failed_job_registry.key, {job_id: time.time() + self._failure_ttl})

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Refuse foreign functions and unreadable jobs; run ours in this process with heartbeats alongside."""
        try:
            reason = refusal(job)
        except Exception as exc:  # the job's data does not decode: it fails, the worker goes on
            reason = f"unreadable job data ({type(exc).__name__}: {bounded(str(exc) or repr(exc.__cause__))})"
        try:
            if reason is not None:
                self._refuse(job, queue, reason)
                return
            execution = self._begin(job, queue)
            self._beat_for(job, execution)
            try:
                self.perform_job(job, queue, execution)
            finally:
                self._beat_for(None, None)
            self.set_state(WorkerStatus.IDLE)  # written by the job's last round trip already, unless it failed
        except REDIS_DOWN as exc:  # the job stops heartbeating: rq's clean-up retries it once Redis is back
            self.log.warning("job %s stopped: redis went away while it ran", job.id)
            self._ride_out(exc)

    # ------------------------------------------------- rq's bookkeeping of one of our jobs, in two round trips
    def _begin(self, job: Job, queue: Queue) -> Execution:
        """rq's ``prepare_execution`` and ``prepare_job_execution`` in one round trip (rq sends two).

        The same records: the execution (in the job's executions, the started registry and the
        worker's executions), the worker busy and beating, the job started and out of the
        intermediate queue.
        """
        ttl = self.get_heartbeat_ttl(job)
        take: Any = None
        with self.connection.pipeline() as pipe:
            execution = Execution.create(job, ttl, pipeline=pipe, worker_name=self.name)
            self.executions[execution.id] = execution
            self.set_state(WorkerStatus.BUSY, pipeline=pipe)
            self.heartbeat(ttl, pipeline=pipe)
            job.prepare_for_execution(self.name, pipeline=pipe)  # sets the job's heartbeat too
            pipe.persist(job.key)
            if len(self.queues) == 1:
                pipe.lrem(queue.intermediate_queue_key, 1, job.id)
            ours = len(pipe)
            try:
                if job.func_name == JOB_FUNCTION:  # the job's own first call (START) rides along
                    take = start_with(pipe, job.args)
                elif job.func_name == BATCH_FUNCTION:  # or the batch's (TAKE, which starts its jobs)
                    take = take_with(pipe, job)
            except Exception:  # e.g. a bad tenant name: the job function meets it and fails the job
                take = None
            replies = pipe.execute(raise_on_error=False)
        failed = [r for r in replies[:ours] if isinstance(r, Exception)]
        if failed:
            raise failed[0]
        if take is not None:
            take(replies[ours:])
        return execution

    def perform_job(self, job: Job, queue: Queue, execution: Execution) -> bool:
        """Run the job (prepared by ``_begin``); a success is recorded in one round trip, a failure as rq does."""
        try:
            started = job.started_at = rq_now()
            with self.death_penalty_class(job.timeout or self.queue_class.DEFAULT_TIMEOUT, JobTimeoutException,
                                          job_id=job.id):
                job.perform()
            self._succeeded(job, execution, started)
        except:  # noqa: E722 - rq's own catch-all: every failure is the job's, recorded as rq records it
            self._finalize_failure(job, queue, execution, sys.exc_info())
            return False
        return True

    def _succeeded(self, job: Job, execution: Execution, started: Any) -> None:
        """rq's success bookkeeping in one transaction, without what our jobs never use.

        The worker's counts, the job finished and expiring, its execution gone from every registry,
        the worker idle. Left out: the WATCH and read of dependents (our jobs have none), the
        separate job heartbeat, rewriting the whole job hash and an rq Result (the job function
        returns None: results live in edgegrad's stream), the finished registry (the record expires).
        """
        job.ended_at = rq_now()
        job._status = JobStatus.FINISHED
        ttl = job.get_result_ttl(self.default_result_ttl)
        with self.connection.pipeline() as pipe:
            self.increment_successful_job_count(pipeline=pipe)
            self.increment_total_working_time(job.ended_at - started, pipe)
            pipe.hset(job.key, mapping={"status": JobStatus.FINISHED, "ended_at": utcformat(job.ended_at),
                                        "last_heartbeat": utcformat(job.ended_at)})
            if ttl == 0:
                job.delete(pipeline=pipe, remove_from_queue=False)
            elif ttl is not None and ttl > 0:
                pipe.expire(job.key, ttl)  # rq's cleanup also expires dependents keys our jobs never have
            self.cleanup_execution(job, pipeline=pipe, execution=execution)
            self.set_state(WorkerStatus.IDLE, pipeline=pipe)
            pipe.execute()

    def handle_exception(self, job: Job, *exc_info: Any) -> None:
        """rq's logging of a job's exception, except Redis going away: that ends the attempt, not the job."""
        if isinstance(exc_info[1], REDIS_DOWN):
            raise exc_info[1]
        super().handle_exception(job, *exc_info)

    def _refuse(self, job: Job, queue: Queue, reason: str) -> None:
        """Fail a job that must not run, recording why; one whose record cannot be written is dropped."""
        self.log.error("refusing job %s: %s", job.id, reason)
        # nothing of the job's own may run on the way out either: no callback, no webhook
        job.webhooks = []
        job._success_callback_name = job._failure_callback_name = job._stopped_callback_name = None
        job.retries_left = 0
        execution = None
        try:
            execution = self.prepare_execution(job)
            self.handle_job_failure(job, queue, exc_string=f"refused: {reason}", execution=execution)
        except REDIS_DOWN:
            raise
        except Exception as exc:  # a job hash rq cannot even write back: leave no registry entry behind
            self.log.error("job %s could not be recorded as failed (%s); dropped", job.id, type(exc).__name__)
            with self.connection.pipeline() as pipe:
                if execution is not None:
                    pipe.zrem(queue.started_job_registry.key, execution.composite_key)
                pipe.zadd(queue.failed_job_registry.key, {job.id: time.time() + self._failure_ttl})
                pipe.execute()

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
            except REDIS_DOWN as exc:  # the outage's one warning says it; the beat is retried on the next tick
                self.outage.noticed(exc)
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
    whose retries are used up would stay RUNNING in edgegrad's record until its TTL. A shard that
    had reported its rows before its worker died fails nothing: if it was the last, a fresh rq job
    folds the shards (``run_gradient_job`` of a reported shard folds when every shard is in).
    """
    if exc_type is AbandonedJobError and not (job.retries_left and job.retries_left > 0):
        if job.func_name == BATCH_FUNCTION:
            abandon_batch(job, get_store())
            return True
        job_id, shard, tenant = job_args(job.args or [job.id])
        store = get_store().for_tenant(tenant)
        reported, all_in = store.shard_reported(job_id, shard)
        if reported:
            if all_in:
                _enqueue_fold(job, store.settings, job_id)
            return True
        reason = f"the worker running shard {shard} of this job stopped (killed or lost) and no retries are left"
        fail_shard(store, job_id, shard, "ABORTED", reason)
    return True  # let other handlers run


def _enqueue_fold(job: Job, settings: Settings, job_id: str) -> None:
    """A new rq job (once) that folds the shards of ``job_id``: the same call as the abandoned shard's."""
    fold_id = rq_job_id(job_id, FOLD_SHARD)
    if Job.exists(fold_id, connection=job.connection):
        return
    queue = Queue(job.origin, connection=job.connection, serializer=JSONSerializer)
    queue.enqueue_call(JOB_FUNCTION, args=job.args, job_id=fold_id, **rq_job_options(settings))


def make_worker(settings: Settings, connection, name: str | None = None) -> EdgegradWorker:
    """A worker on the configured queue, tuned from ``settings``."""
    queue = Queue(settings.queue, connection=connection, serializer=JSONSerializer)
    worker = EdgegradWorker([queue], name=name, connection=connection, serializer=JSONSerializer,
                            worker_ttl=max(16, settings.worker_ttl), maintenance_interval=settings.maintenance_interval,
                            job_monitoring_interval=max(1, settings.job_heartbeat_ttl // 3), default_result_ttl=RQ_RECORD_TTL)
    worker.job_heartbeat_ttl = settings.job_heartbeat_ttl
    worker._failure_ttl = settings.result_ttl
    worker.max_connection_wait_time = worker.outage.most  # rq's own reconnect backoff (default 60 s): the same cap
    worker.push_exc_handler(end_abandoned_job)
    return worker
