"""Job records: ids and names, the Redis hash of a job, and the Job proto built from it."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Mapping
from typing import Any, cast

from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import status_pb2
from rq import Retry

from ..errors import EdgegradError, InvalidInput
from ..settings import Settings
from ..status import CODE_NUMBERS, rich_status
from ..v1 import job_pb2
from ..wire.chunking import is_summed
from ..wire.population_shards import has_partials, row_shards
from .contract import QUEUED, stored

__all__ = ["new_job_id", "id_prefix_at", "job_name", "job_id_from_name", "initial_fields", "job_from_fields",
           "error_fields", "loss_fields", "shard_progress", "progress", "rq_job_options", "rq_job_id", "FOLD_SHARD", "RQ_RECORD_TTL"]

#: seconds rq keeps its own record of a finished job (our job function returns None; results live
#: in edgegrad's streams). A short positive TTL lets rq expire the record instead of deleting it at
#: once, which costs several extra round trips per job.
RQ_RECORD_TTL = 60

_NAME = re.compile(r"^jobs/([0-9a-f]{26})$")


def new_job_id() -> str:
    """26 hex digits: microseconds since the epoch, then randomness, so ids sort by creation."""
    return f"{time.time_ns() // 1000:014x}{secrets.token_hex(6)}"


#: the "shard" in the rq job id of a fold started apart from the shards (their last worker died folding)
FOLD_SHARD = "r"


def rq_job_options(settings: Settings) -> dict[str, Any]:
    """The options of rq's enqueue calls for every rq job of ours: a shard's, or a fold started apart."""
    return {"timeout": settings.job_timeout, "result_ttl": RQ_RECORD_TTL, "failure_ttl": settings.result_ttl,
            "ttl": settings.job_ttl, "retry": Retry(max=settings.job_retries) if settings.job_retries else None}


def rq_job_id(job_id: str, shard: int | str) -> str:
    """The id of the rq job that runs one shard of a job (or, for ``FOLD_SHARD``, folds its shards)."""
    return f"{job_id}-{shard}"


def id_prefix_at(moment: float) -> str:
    """The id prefix of jobs created at ``moment`` (seconds since the epoch): ids sort against it."""
    return f"{max(0, int(moment * 1_000_000)):014x}"


def job_name(job_id: str) -> str:
    """The resource name of a job: ``jobs/<id>``."""
    return f"jobs/{job_id}"


def job_id_from_name(name: str, place: str = "name") -> str:
    """The id inside ``jobs/<id>``; InvalidInput when the name is malformed."""
    match = _NAME.match(name)
    if not match:
        raise InvalidInput(f"{place}: expected a job name 'jobs/<26 hex digits>', got {name!r}")
    return match.group(1)


def initial_fields(job_id: str, request_id: str, fingerprint: str, network_hash: str,
                   layout: job_pb2.ResultLayout, now: float, expire: float, work: int,
                   pieces: job_pb2.BatchPieces | None = None, upload_key: str = "") -> dict[str, bytes | str]:
    """The hash of a job just submitted; ``work`` estimates its multiply-adds.

    ``pieces`` says where the batch rows are when they are not in the spec; ``upload_key`` is
    the upload's key, whose pieces are dropped with the job.
    """
    summed = any(is_summed(layout, f) for f in layout.fields) or has_partials(layout)
    fields: dict[str, bytes | str] = {
        "id": job_id, "state": stored(QUEUED), "request_id": request_id, "fingerprint": fingerprint,
        "network_hash": network_hash, "layout": layout.SerializeToString(), "create_time": repr(now),
        "expire_time": repr(expire), "chunks_done": "0", "attempt": "0", "work": str(work),
        "shards": str(layout.shard_count), "summed": "1" if summed else "0"}
    if pieces is not None:
        fields["pieces"] = pieces.SerializeToString()
        fields["upload"] = upload_key
        fields["upload_pieces"] = str(-(-pieces.rows // max(1, pieces.piece_rows)))
    return fields


def shard_progress(fields: Mapping[bytes, bytes | None], index: int | str) -> tuple[int, int, int, str]:
    """(state, attempt, chunks written, worker) of shard ``index`` ('r': the fold) from a job hash."""
    return progress(fields.get(f"s:{index}".encode()))


def progress(raw: bytes | None) -> tuple[int, int, int, str]:
    """(state, attempt, chunks written, worker) from one progress field (``state|attempt|chunks|worker``) of a
    job hash; a missing one is queued, nothing written."""
    if not raw:
        return job_pb2.JOB_STATE_QUEUED, 0, 0, ""
    state, attempt, chunks, worker = raw.decode().split("|", 3)
    return int(state), int(attempt), int(chunks), worker


def error_fields(code: str, message: str, field: str | None = None) -> dict[str, str]:
    """Hash fields recording a failure with a status code name (and the place it is about, if any)."""
    fields = {"error_code": str(CODE_NUMBERS.get(code, CODE_NUMBERS["INTERNAL"])), "error_message": message}
    if field:
        fields["error_field"] = field
    return fields


def loss_fields(loss: float | None) -> dict[str, str]:
    """Hash fields recording the loss exactly (as a hex float)."""
    return {} if loss is None else {"loss": float(loss).hex()}


def _timestamp(value: bytes | None) -> Timestamp | None:
    if not value:
        return None
    ts = Timestamp()
    ts.FromNanoseconds(int(float(value) * 1e9))
    return ts


def job_from_fields(fields: Mapping[bytes, bytes]) -> job_pb2.Job:
    """The Job proto of a job hash (as HGETALL returns it, bytes keys)."""
    get = fields.get
    job = job_pb2.Job(
        name=job_name(get(b"id", b"").decode()), state=cast(job_pb2.JobState, int(get(b"state", b"0"))),
        request_id=get(b"request_id", b"").decode(), network_hash=get(b"network_hash", b"").decode(),
        chunks_done=int(get(b"chunks_done", b"0")), attempt=int(get(b"attempt", b"0")),
        worker=get(b"worker", b"").decode())
    job.layout.ParseFromString(get(b"layout", b""))
    for name in ("create_time", "start_time", "end_time", "expire_time"):
        ts = _timestamp(get(name.encode()))
        if ts is not None:
            getattr(job, name).CopyFrom(ts)
    if code := get(b"error_code"):
        if field := get(b"error_field"):  # the google.rpc.Status the server would send for this error
            error = EdgegradError(get(b"error_message", b"").decode(), field=field.decode())
            job.error.CopyFrom(rich_status(error))
            job.error.code = int(code)
        else:
            job.error.CopyFrom(status_pb2.Status(code=int(code), message=get(b"error_message", b"").decode()))
    if loss := get(b"loss"):
        job.loss = float.fromhex(loss.decode())
    job.rows_done = int(get(b"rows_done", b"0"))
    job.shards_done = int(get(b"shards_done", b"0"))
    rows = max(1, job.layout.shard_rows)
    population = job.layout.HasField("population")
    shards = row_shards(job.layout) if population else None
    job.population_size = job.layout.population.size
    for index in range(job.layout.shard_count):
        state, attempt, chunks, worker = shard_progress(fields, index)
        if state in (job_pb2.JOB_STATE_QUEUED, job_pb2.JOB_STATE_RUNNING) and job.state > job_pb2.JOB_STATE_RUNNING:
            state = job.state  # the job ended (failed or cancelled) before this shard did
        shard = job.shards.add(index=index, state=state, worker=worker, attempt=attempt, chunks_done=chunks)
        if shards is not None:  # a shard is a range of networks (and of rows, with row shards)
            shard.network_start, shard.network_stop = shards.net_start[index], shards.net_stop[index]
            if job.layout.population.shard_rows:
                shard.row_start, shard.row_stop = shards.row_start[index], shards.row_stop[index]
        else:
            shard.row_start, shard.row_stop = index * rows, min(job.layout.batch, (index + 1) * rows)
    return job


def final_state(value: Any) -> str:
    """A FINISH or CANCEL reply as a state string ("gone" for a job that no longer exists; FINISH's
    ``was N`` for a job that had already ended in state N)."""
    return value.decode() if isinstance(value, bytes) else ("gone" if value is None else str(value))
