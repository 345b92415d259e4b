"""Small jobs run together: the rq job that takes a lane's waiting jobs and runs them as one engine call.

``run_job_batch(lane, tenant)`` takes up to ``batch_max_jobs`` job ids from the lane (``jobs/lanes.py``),
starts them all in one round trip, computes them with ``gradients_many`` (one call for the whole
batch: the population engine, whose results for a network never depend on the other networks of
the call, so a job's bits are the same whatever it was batched with), and writes every job's chunks
and end in one more round trip. Each job keeps its own record, events, stream and attempts: one
that fails at run time fails alone (the rest run again without it), a cancelled or deleted one is
skipped, and if the worker dies the rq job's retry takes the same jobs and reruns the unfinished.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, cast

from rq import Queue, get_current_job
from rq.job import Job
from rq.serializers import JSONSerializer

from edgegrad import joblog, metrics
from edgegrad.engine.population import gradients_many
from edgegrad.engine.result import GradientResult
from edgegrad.errors import EdgegradError
from edgegrad.jobs.contract import BATCH_FUNCTION
from edgegrad.jobs.creating import script_commands
from edgegrad.jobs.lanes import TAKE
from edgegrad.jobs.record import rq_job_options
from edgegrad.jobs.rqenqueue import RqEnqueuer, batch_job_id
from edgegrad.jobs.scripts import ANNOUNCE_WORK
from edgegrad.jobs.tenants import DEFAULT_TENANT
from edgegrad.jobs.worker_store import EMIT_WRITTEN, Started, WorkerStore, read_started
from edgegrad.model.network import Network
from edgegrad.v1 import job_pb2
from edgegrad.wire.chunking import buffered_chunk_limit
from edgegrad.wire.codec import array_from_tensor

from .jobs import (
    fail_shard,
    failing_alone,
    get_store,
    only_shard_ended,
    only_shard_output,
    run_started,
    write_only_shard,
)
from .outage import REDIS_DOWN

__all__ = ["run_job_batch", "take_with", "abandon_batch"]

#: the entry of a population call's error message that names one of its networks: nets[3], inputs[3]...
_PLACE = re.compile(r"^(nets|inputs|targets)\[(\d+)\](: )?")

log = logging.getLogger("edgegrad.worker")

#: per Redis client of the process: what enqueues a lane's next rq job, and TAKE
_enqueuers: dict[int, RqEnqueuer] = {}
_scripts: dict[int, Any] = {}
#: the TAKE reply the worker fetched with rq's own start of the batch: ((tenant, lane, rq job id), jobs taken)
_prefetched: tuple[tuple[str, str, str], list[tuple[str, Started]]] | None = None


class _Job(NamedTuple):
    """A started small job of the batch, its request and its result layout."""

    job_id: str
    started: Started
    request: job_pb2.GradientRequest
    layout: job_pb2.ResultLayout
    began: Any  #: what joblog.begin_shard returned for it


def run_job_batch(lane: str, tenant: str = DEFAULT_TENANT) -> None:
    """Take up to ``batch_max_jobs`` of ``tenant``'s small jobs waiting in ``lane`` and run them together."""
    global _prefetched
    store = get_store().for_tenant(tenant)
    current = get_current_job()
    batch_id = current.id if current is not None else batch_job_id(store.settings.queue)
    fetched, _prefetched = _prefetched, None
    if fetched is not None and fetched[0] == (tenant, lane, batch_id):
        taken = fetched[1]
    else:
        if store.settings.batch_delay_ms > 0 and store.redis.llen(store.keys.lane(lane)) < store.settings.batch_max_jobs:
            time.sleep(store.settings.batch_delay_ms / 1000)  # let the batch fill, as Triton's max_queue_delay does
        keys, args = _take_call(store, lane, batch_id)
        taken = _read_taken(_take_script(store)(keys=keys, args=args))
    if taken:
        metrics.BATCH_SIZE.observe(len(taken))
        run_batch(store, taken)


def take_with(pipe: Any, job: Job) -> Callable[[list], None] | None:
    """Put the TAKE of the batch rq job ``job`` into ``pipe`` (the worker's pipeline that starts the rq job, so
    both take one round trip); returns what takes the replies from TAKE's on. None where the batch is to wait and
    fill first."""
    lane, tenant = (list(job.args or []) + [DEFAULT_TENANT])[:2]
    store = get_store().for_tenant(tenant)
    if store.settings.batch_delay_ms > 0:
        return None
    keys, args = _take_call(store, lane, job.id)
    pipe.evalsha(_take_script(store).sha, len(keys), *keys, *args)

    def read(replies: list) -> None:
        global _prefetched
        reply = replies[0]
        _prefetched = None if isinstance(reply, Exception) else ((tenant, lane, job.id), _read_taken(reply))
    return read


def _take_call(store: WorkerStore, lane: str, batch_id: str) -> tuple[list[str], list[Any]]:
    """TAKE's keys and arguments: the ids this batch holds (the same again on a retry), each started, the lane's
    next rq job enqueued if some are left."""
    s, k = store.settings, store.keys
    enqueuer = _enqueuers.get(id(store.redis))
    if enqueuer is None:
        enqueuer = _enqueuers[id(store.redis)] = RqEnqueuer(s)
    args: list[Any] = [max(1, s.batch_max_jobs), s.job_ttl, k.job(""), store.name, repr(time.time()), ANNOUNCE_WORK,
                       *script_commands(enqueuer.batch_commands(lane, k.tenant)[1])]
    return [k.lane(lane), k.lane_wake(lane), k.batch(batch_id)], args


def _take_script(store: WorkerStore) -> Any:
    """TAKE, registered once per Redis client (its sha is what a pipeline sends)."""
    script = _scripts.get(id(store.redis))
    if script is None:
        script = _scripts[id(store.redis)] = store.redis.register_script(TAKE)
    return script


def _read_taken(reply: Any) -> list[tuple[str, Started]]:
    """TAKE's reply: each job taken, with its START."""
    ids, starts = reply
    return [(job_id.decode(), read_started(started)) for job_id, started in zip(ids, starts)]


def run_batch(store: WorkerStore, taken: Sequence[tuple[str, Started]]) -> None:
    """Run the started jobs ``taken`` that are to run, one engine call for each kind of call among them."""
    groups: dict[bytes, list[_Job]] = {}
    for job_id, started in taken:
        if started.kind == "fold":  # its chunks are written but its worker died before ending it: end it
            with failing_alone(store, job_id, 0):
                joblog.begin_shard(store, job_id, 0, started.attempt, started.kind, started.created)
                run_started(store, job_id, 0, started)
        elif started.kind == "run":
            began = joblog.begin_shard(store, job_id, 0, started.attempt, "run", started.created)
            with failing_alone(store, job_id, 0, began):
                request = job_pb2.GradientRequest.FromString(started.spec)
                job = _Job(job_id, started, request, job_pb2.ResultLayout.FromString(started.layout), began)
                groups.setdefault(_call_kind(request), []).append(job)
    for jobs in groups.values():
        _run_together(store, jobs)


def _call_kind(request: job_pb2.GradientRequest) -> bytes:
    """The options that must agree for jobs to share one engine call (a lane's jobs agree on all of them)."""
    kind = job_pb2.GradientRequest(loss=request.loss, reduction=request.reduction, per_example=request.per_example,
                                   dtype=request.dtype, norms=request.norms, clip_norm=request.clip_norm)
    return kind.SerializeToString(deterministic=True)


def _run_together(store: WorkerStore, jobs: list[_Job]) -> None:
    """One ``gradients_many`` call for ``jobs``; a job that fails at run time fails alone, the others run again."""
    while jobs:
        try:
            results = _compute(store, jobs)
        except EdgegradError as exc:
            bad = _blamed(exc, len(jobs))
            if bad is None:  # not one job's fault by its message: each job alone decides
                if len(jobs) == 1:
                    _fail(store, jobs[0], exc)
                else:
                    for job in jobs:
                        _run_together(store, [job])
                return
            _fail(store, jobs[bad], exc)
            jobs = jobs[:bad] + jobs[bad + 1:]
            continue
        except REDIS_DOWN:  # not the jobs' fault: the worker waits for Redis and rq retries the batch
            raise
        except Exception as exc:  # a bug: every job of the call fails with the reason, the worker lives on
            log.exception("batch of %d jobs failed", len(jobs))
            for job in jobs:
                fail_shard(store, job.job_id, 0, "INTERNAL", f"{type(exc).__name__}: {exc}", None, job.began)
            return
        _write(store, jobs, results)
        return


def _compute(store: WorkerStore, jobs: list[_Job]) -> list[GradientResult]:
    """The jobs' results from one population call (their networks read with one MGET where not cached)."""
    first = jobs[0].request
    nets: list[Network] = store.networks([job.request.network_hash for job in jobs])
    inputs = [array_from_tensor(job.request.inputs, "inputs") for job in jobs]
    targets = [array_from_tensor(job.request.targets, "targets") for job in jobs] if first.loss else None
    return gradients_many(nets, inputs, targets, loss=first.loss or None, reduction=first.reduction or "mean",
                          per_example=first.per_example, dtype=first.dtype or "float64", norms=first.norms,
                          clip_norm=first.clip_norm if first.clip_norm != 0 else None)


def _blamed(exc: EdgegradError, count: int) -> int | None:
    """The job an error of a population call names (``nets[i]``...), or None."""
    found = _PLACE.match(exc.message)
    return None if found is None or int(found.group(2)) >= count else int(found.group(2))


def _fail(store: WorkerStore, job: _Job, exc: EdgegradError) -> None:
    """End ``job`` failed with the message it gets when it runs alone (without the population's ``nets[i]``)."""
    found = _PLACE.match(exc.message)
    message = exc.message
    if found is not None:
        message = message[found.end():] if found.group(1) == "nets" else found.group(1) + message[found.end(2) + 1:]
    fail_shard(store, job.job_id, 0, exc.code, message, exc.field, job.began)


def _write(store: WorkerStore, jobs: list[_Job], results: list[GradientResult]) -> None:
    """Every job's chunks and end in one DONE script call; a job whose chunks do not fit one call is written alone."""
    parts: list[list[Any]] = []
    written: list[tuple[_Job, int]] = []
    for job, part in zip(jobs, results):
        with failing_alone(store, job.job_id, 0, job.began):
            output = only_shard_output(store, job.job_id, job.started, job.layout, part)
            limit = buffered_chunk_limit(job.layout)
            chunks = list(output.chunks)
            given = store.done_part(job.job_id, chunks, job.layout.chunk_count, output.fields) \
                if not limit or job.layout.chunk_count <= limit else None
            if given is None:  # chunks too large for one script call: written alone, as any job's are
                write_only_shard(store, job.job_id, job.layout, output._replace(chunks=iter(chunks)), job.began)
                continue
            parts.append(given)
            written.append((job, output.nbytes))
    if not parts:
        return
    done = store.done_call(parts)
    try:
        replies = store.call(done)[0]  # one script: each watcher wakes once, to every chunk and the end
    except REDIS_DOWN:  # rq retries the batch once Redis is back: the same jobs, started again
        raise
    except Exception as exc:  # a bug: the jobs fail (not left running until their TTL), the worker lives on
        log.exception("writing a batch of %d jobs failed", len(written))
        for job, _ in written:
            fail_shard(store, job.job_id, 0, "INTERNAL", f"{type(exc).__name__}: {exc}", None, job.began)
        return
    for (job, nbytes), (code, finished) in zip(written, replies):
        if int(code) == EMIT_WRITTEN:  # else CANCEL or DELETE ended the job meanwhile
            only_shard_ended(store, job.job_id, job.layout, nbytes, finished, job.began)


def abandon_batch(job: Job, store: WorkerStore) -> None:
    """A batch rq job abandoned with no retries left: its unfinished jobs fail; one that took none is enqueued
    again (its lane's jobs must not wait for a submission that may never come)."""
    lane, tenant = (list(job.args or []) + [DEFAULT_TENANT])[:2]
    store = store.for_tenant(tenant)
    ids = [i.decode() for i in cast(list[bytes], store.redis.lrange(store.keys.batch(job.id), 0, -1))]
    if not ids:
        queue = Queue(job.origin, connection=job.connection, serializer=JSONSerializer)
        queue.enqueue_call(BATCH_FUNCTION, args=job.args, job_id=batch_job_id(store.settings.queue),
                           **rq_job_options(store.settings))
        return
    reason = "the worker running this job's batch stopped (killed or lost) and no retries are left"
    for job_id in ids:
        fail_shard(store, job_id, 0, "ABORTED", reason)
