"""The rq job functions edgegrad's workers run (and the only ones they run).

Every shard of a job is one rq job, ``run_gradient_job(job_id, shard)``. A shard computes its rows,
streams the chunks of its rows and reports its share of the loss (and, in loss mode, its partial
sums). The worker that reports the last shard folds the shares in shard order, so the result never
depends on which worker ran which shard or finished first; if it dies while folding, the retry of
its rq job folds again.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np

from edgegrad import joblog
from edgegrad.engine.api import fold_partials, partial_gradients
from edgegrad.engine.overflow import result_overflow_message
from edgegrad.engine.plan import get_plan
from edgegrad.engine.result import GradientResult
from edgegrad.errors import EdgegradError, InvalidInput
from edgegrad.jobs.contract import BATCH_FUNCTION, FAILED, JOB_FUNCTION, SUCCEEDED
from edgegrad.jobs.record import error_fields, final_state, loss_fields
from edgegrad.jobs.tenants import DEFAULT_TENANT
from edgegrad.jobs.worker_store import EMIT_WRITTEN, Started, WorkerStore
from edgegrad.settings import Settings
from edgegrad.v1 import job_pb2
from edgegrad.wire.chunking import (
    buffered_chunk_limit,
    chunk_parts,
    field_arrays,
    is_summed,
    numpy_dtype,
    result_bytes,
    shard_bounds,
    shard_chunk_plans,
    summed_chunk_plans,
)
from edgegrad.wire.codec import array_from_tensor

from .outage import REDIS_DOWN
from .population import finish_population, run_population_shard

__all__ = ["run_gradient_job", "set_store", "get_store", "start_with", "job_args", "ALLOWED_FUNCTIONS",
           "only_shard_output", "only_shard_ended", "ShardOutput", "run_started", "failing_alone", "fail_shard",
           "write_only_shard"]

log = logging.getLogger("edgegrad.worker")

#: job functions a worker agrees to run, by rq's func_name
ALLOWED_FUNCTIONS = frozenset({JOB_FUNCTION, BATCH_FUNCTION})

_store: WorkerStore | None = None
#: the START reply the worker fetched with rq's own start of the job: ((tenant, job id, shard), Started)
_prefetched: tuple[tuple[str, str, int], Started] | None = None


def set_store(store: WorkerStore | None) -> None:
    """Use this store (and its network cache) for the jobs of this process."""
    global _store
    _store = store


def get_store() -> WorkerStore:
    """The process's store, made from the environment on first use."""
    global _store
    if _store is None:
        _store = WorkerStore(Settings.from_env(), name=f"pid-{os.getpid()}")
    return _store


def job_args(args: Any) -> tuple[str, int, str]:
    """(job id, shard, tenant) of an rq job's arguments, with ``run_gradient_job``'s defaults for those left out."""
    given = list(args or [])
    job_id, shard, tenant = given + [0, DEFAULT_TENANT][len(given) - 1:]
    return job_id, shard, tenant


def start_with(pipe: Any, args: Any) -> Callable[[list], None]:
    """Put the START of the rq job with ``args`` into ``pipe`` (the worker's pipeline that starts the rq job,
    so both take one round trip); returns what takes the replies from START's on (an error: the job starts
    itself)."""
    job_id, shard, tenant = job_args(args)
    read = get_store().for_tenant(tenant).start_in(pipe, job_id, shard)

    def take(replies: list) -> None:
        global _prefetched
        started = read(replies)
        _prefetched = None if started is None else ((tenant, job_id, shard), started)
    return take


def _start(store: WorkerStore, tenant: str, job_id: str, shard: int) -> Started:
    """START's answer for this shard: the one fetched with rq's start of it, else from a START sent now."""
    global _prefetched
    fetched, _prefetched = _prefetched, None
    if fetched is not None and fetched[0] == (tenant, job_id, shard):
        return fetched[1]
    return store.start(job_id, shard)


def run_gradient_job(job_id: str, shard: int = 0, tenant: str = DEFAULT_TENANT) -> None:
    """Run one shard of a tenant's gradient job (or fold the shards of one whose folding worker died)."""
    store = get_store().for_tenant(tenant)  # every key it touches is the tenant's
    with failing_alone(store, job_id, shard):
        started = _start(store, tenant, job_id, shard)
        if started.kind not in ("run", "fold"):
            return
        joblog.begin_shard(store, job_id, shard, started.attempt, started.kind, started.created)
        run_started(store, job_id, shard, started)


@contextlib.contextmanager
def failing_alone(store: WorkerStore, job_id: str, shard: int, began: Any = None) -> Iterator[None]:
    """Run a shard's work: what goes wrong fails its job (and nothing else), except Redis going away."""
    try:
        yield
    except EdgegradError as exc:
        fail_shard(store, job_id, shard, exc.code, exc.message, exc.field, began)
    except REDIS_DOWN:  # not the job's fault: the worker waits for Redis and rq retries the shard
        raise
    except Exception as exc:  # a bug or an environment problem: the job fails, the worker lives on
        log.exception("job %s shard %s failed", job_id, shard)
        fail_shard(store, job_id, shard, "INTERNAL", f"{type(exc).__name__}: {exc}", None, began)
    finally:
        joblog.end_shard()


def fail_shard(store: WorkerStore, job_id: str, shard: int, code: str, reason: str, field: str | None = None,
               began: Any = None) -> None:
    """End the job failed with ``reason`` (one job event); ``began`` as for ``joblog.job_ended``."""
    joblog.job_ended(store.fail(job_id, FAILED, error_fields(code, reason, field)), store, job_id, shard,
                     reason=reason, began=began)


def run_started(store: WorkerStore, job_id: str, shard: int, started: Started) -> None:
    """Run a started shard (or fold the shards of a job whose folding worker died)."""
    layout = job_pb2.ResultLayout.FromString(started.layout)
    if layout.HasField("population"):  # a shard of networks (worker/population.py)
        if started.kind == "fold" or run_population_shard(store, job_id, shard, started, layout) == "last":
            finish_population(store, job_id, layout)
        return
    request = job_pb2.GradientRequest.FromString(started.spec)
    loss = request.loss or None
    if started.kind == "fold":
        _fold(store, job_id, request, layout, started.chunks_done)
        return
    net = store.network(request.network_hash)
    a, b = shard_bounds(layout, shard)
    if started.pieces:
        x, t = store.rows(job_pb2.BatchPieces.FromString(started.pieces), a, b)
    else:
        x = array_from_tensor(request.inputs, "inputs")[a:b]
        t = array_from_tensor(request.targets, "targets")[a:b] if request.HasField("targets") else None
    part = partial_gradients(net, x, targets=t, loss=loss, reduction=request.reduction or "mean",
                             per_example=request.per_example, dtype=request.dtype or "float64",
                             total_rows=int(layout.batch), row_offset=a, norms=request.norms,
                             clip_norm=request.clip_norm if request.clip_norm != 0 else None)
    if layout.shard_count == 1:  # one shard: no other shard to wait for, nothing to fold; the job ends with it
        write_only_shard(store, job_id, layout, only_shard_output(store, job_id, started, layout, part))
        return
    arrays = field_arrays(part, layout)
    plans = shard_chunk_plans(layout, shard)
    summed = summed_chunk_plans(layout)
    chunks = chunk_parts(arrays, layout, plans, first_row=a, shard=shard, after=started.chunks_done)
    share = "" if part.loss is None else float(part.loss).hex()
    nbytes = sum(int(v.nbytes) for v in arrays.values())
    limit = buffered_chunk_limit(layout)
    partial = arrays[job_pb2.RESULT_FIELD_EDGE_GRADS].tobytes() + arrays[job_pb2.RESULT_FIELD_DELTAS].tobytes() \
        if summed else b""
    code, replies = store.emit(job_id, f"s:{shard}", chunks, limit,
                               [store.shard_done(job_id, shard, len(plans), b - a, share, partial)])
    if code != EMIT_WRITTEN:  # cancelled or deleted: CANCEL/DELETE ended the job already
        return
    joblog.shard_done(b - a, nbytes)
    done, total = (list(replies[0]) + [0])[:2]
    if done == -2:
        fail_shard(store, job_id, shard, "INTERNAL", f"shard {shard}: result chunks missing")
    elif done == total:  # this was the last shard to finish: fold them all, in shard order
        _fold(store, job_id, request, layout, 0)


class ShardOutput(NamedTuple):
    """What a job of one shard writes: its chunks (the sums last), the FINISH that ends it, its result bytes,
    and the fields that FINISH sets (what a DONE call of ``WorkerStore.done_call`` is given instead)."""

    chunks: Iterator[tuple[int, bytes | list]]
    finish: tuple[str, list[str], list[Any]]
    nbytes: int
    fields: dict[str, str]


def only_shard_output(store: WorkerStore, job_id: str, started: Started, layout: job_pb2.ResultLayout,
                      part: GradientResult) -> ShardOutput:
    """The chunks and FINISH of a job of one shard: nothing to fold, its sums are written as its last chunks."""
    arrays = field_arrays(part, layout)
    plans = shard_chunk_plans(layout, 0)
    sums = [p._replace(seq=len(plans) + i + 1) for i, p in enumerate(summed_chunk_plans(layout))]
    chunks = itertools.chain(chunk_parts(arrays, layout, plans, first_row=0, shard=0, after=started.chunks_done),
                             chunk_parts(arrays, layout, sums, shard=1, after=started.chunks_done))
    progress = {"rows_done": str(layout.batch), "shards_done": "1",
                "s:0": f"3|{started.attempt}|{len(plans) + len(sums)}|{store.name}", **loss_fields(part.loss)}
    return ShardOutput(chunks, store.finish(job_id, SUCCEEDED, layout.chunk_count, progress),
                       sum(int(v.nbytes) for v in arrays.values()), progress)


def write_only_shard(store: WorkerStore, job_id: str, layout: job_pb2.ResultLayout, output: ShardOutput,
                     began: Any = None) -> None:
    """Write the chunks of a job of one shard and end it (in one script call where its buffer cannot fill and
    its chunks are small, else in one round trip where its buffer cannot fill)."""
    limit = buffered_chunk_limit(layout)
    fits = not limit or layout.chunk_count <= limit  # the buffer cannot fill: end in the same round trip
    chunks = list(output.chunks) if fits else []
    part = store.done_part(job_id, chunks, layout.chunk_count, output.fields) if fits else None
    if part is not None:
        reply = store.call(store.done_call([part]))[0][0]  # the job's {EMIT's code, FINISH's reply}
        code, replies = int(reply[0]), [reply[1]]
    elif fits:
        code, replies = store.emit(job_id, "s:0", iter(chunks), limit, [output.finish])
    elif (code := store.emit(job_id, "s:0", output.chunks, limit)[0]) == EMIT_WRITTEN:
        replies = store.call(output.finish)
    if code == EMIT_WRITTEN:  # unless refused because CANCEL or DELETE ended the job already
        only_shard_ended(store, job_id, layout, output.nbytes, replies[-1], began)


def only_shard_ended(store: WorkerStore, job_id: str, layout: job_pb2.ResultLayout, nbytes: int, finished: Any,
                     began: Any = None) -> None:
    """Log a job of one shard whose chunks are written, as its FINISH answered (``finished``)."""
    joblog.shard_done(int(layout.batch), nbytes, began)
    joblog.job_ended(final_state(finished), store, job_id, 0, rows=int(layout.batch), nbytes=result_bytes(layout),
                     began=began)


def _fold(store: WorkerStore, job_id: str, request: job_pb2.GradientRequest, layout: job_pb2.ResultLayout,
          after: int) -> None:
    """Sum the shards' loss shares and partial sums in shard order; write the sums; end the job."""
    loss = request.loss or None
    shares, blobs = store.shard_shares(job_id, layout.shard_count)
    # a job of one shard wrote its sums with its own chunks (its worker died before ending the job)
    plans = summed_chunk_plans(layout) if layout.shard_count > 1 else []
    sizes = [int(f.shape[0]) for f in layout.fields if is_summed(layout, f)] if plans else [0, 0]
    dtype = numpy_dtype(layout)
    empty = np.empty((0, int(layout.fields[0].shape[1])), dtype=dtype)  # outputs went with the shards

    def parts():
        for share, blob in zip(shares, blobs if plans else (b"" for _ in shares)):
            values = np.frombuffer(blob or b"", dtype=dtype)
            yield GradientResult(empty, None if loss is None else float.fromhex(share.decode()),
                                 values[:sizes[0]], values[sizes[0]:sizes[0] + sizes[1]])

    total = fold_partials(parts())  # in shard order, always: the same bits whoever ran which shard
    if not total.is_finite():  # every shard was finite; their sum is not
        net = store.network(request.network_hash)
        raise InvalidInput(result_overflow_message(net, get_plan(net, request.dtype or "float64"), total))
    if plans:
        arrays: dict[int, np.ndarray] = {job_pb2.RESULT_FIELD_EDGE_GRADS: total.edge_grads,
                                         job_pb2.RESULT_FIELD_DELTAS: total.deltas}
        chunks = chunk_parts(arrays, layout, plans, shard=layout.shard_count, after=after)
        code, _ = store.emit(job_id, "s:r", chunks, buffered_chunk_limit(layout))
        if code != EMIT_WRITTEN:  # cancelled or deleted meanwhile
            return
    state = store.call(store.finish(job_id, SUCCEEDED, layout.chunk_count, loss_fields(total.loss)))[-1]
    joblog.job_ended(final_state(state), store, job_id, None, rows=int(layout.batch), nbytes=result_bytes(layout))
