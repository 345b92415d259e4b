"""Job records: ids and names, the Redis hash of a job, and the Job proto built from it."""

from __future__ import annotations

import re
import secrets
import time
from typing import Mapping

from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import code_pb2, status_pb2

from .errors import InvalidInput
from .v1 import job_pb2

__all__ = ["new_job_id", "id_prefix_at", "job_name", "job_id_from_name", "initial_fields", "job_from_fields",
           "error_fields", "loss_fields", "GRPC_CODE_NUMBERS", "RQ_RECORD_TTL"]

#: seconds rq keeps its own record of a finished job (our job function returns None; results live
#: in edgegrad's streams). A short positive TTL lets rq expire the record instead of deleting it at
#: once, which costs several extra round trips per job.
RQ_RECORD_TTL = 60

_NAME = re.compile(r"^jobs/([0-9a-f]{26})$")

#: grpc.StatusCode member name -> google.rpc.Code number
GRPC_CODE_NUMBERS: dict[str, int] = {name: number for name, number in code_pb2.Code.items()}
GRPC_CODE_NUMBERS["CANCELLED"] = code_pb2.CANCELLED


def new_job_id() -> str:
    """26 hex digits: microseconds since the epoch, then randomness, so ids sort by creation."""
    return f"{time.time_ns() // 1000:014x}{secrets.token_hex(6)}"


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
                   layout: job_pb2.ResultLayout, now: float, expire: float, work: int) -> dict[str, bytes | str]:
    """The hash of a job just submitted; ``work`` estimates its multiply-adds."""
    return {"id": job_id, "state": "1", "request_id": request_id, "fingerprint": fingerprint,
            "network_hash": network_hash, "layout": layout.SerializeToString(), "create_time": repr(now),
            "expire_time": repr(expire), "chunks_done": "0", "attempt": "0", "work": str(work)}


def error_fields(code: str, message: str) -> dict[str, str]:
    """Hash fields recording a failure with a grpc status code name."""
    return {"error_code": str(GRPC_CODE_NUMBERS.get(code, code_pb2.INTERNAL)), "error_message": message}


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
        name=job_name(get(b"id", b"").decode()), state=int(get(b"state", b"0")),
        request_id=get(b"request_id", b"").decode(), network_hash=get(b"network_hash", b"").decode(),
        chunks_done=int(get(b"chunks_done", b"0")), attempt=int(get(b"attempt", b"0")),
        worker=get(b"worker", b"").decode())
    job.layout.ParseFromString(get(b"layout", b""))
    for name in ("create_time", "start_time", "end_time", "expire_time"):
        ts = _timestamp(get(name.encode()))
        if ts is not None:
            getattr(job, name).CopyFrom(ts)
    if get(b"error_code"):
        job.error.CopyFrom(status_pb2.Status(code=int(get(b"error_code")),
                                             message=get(b"error_message", b"").decode()))
    if get(b"loss"):
        job.loss = float.fromhex(get(b"loss").decode())
    job.shards.add(index=0, row_start=0, row_stop=job.layout.batch, state=job.state, worker=job.worker,
                   attempt=job.attempt)
    return job
