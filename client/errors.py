"""gRPC failures and failed jobs as ``edgegrad.errors`` exceptions: the client's one mapping place."""

from __future__ import annotations

from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from edgegrad import errors
from edgegrad.v1 import job_pb2

__all__ = ["from_rpc_error", "from_status", "job_error", "is_retryable", "RETRYABLE"]

_DETAILS_KEY = "grpc-status-details-bin"

#: status codes a client may retry: the call never reached a server that could answer it
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE})


def _classes() -> dict[str, type[errors.EdgegradError]]:
    """Status-code name -> the error class tagged with it, taken from edgegrad.errors."""
    found: dict[str, type[errors.EdgegradError]] = {}
    for name in errors.__all__:
        cls = getattr(errors, name)
        if isinstance(cls, type) and issubclass(cls, errors.EdgegradError) and cls is not errors.EdgegradError:
            found.setdefault(cls.code, cls)
    return found


_BY_CODE = _classes()


def _make(code_name: str, message: str, field: str | None = None) -> errors.EdgegradError:
    """An instance of the class for ``code_name``; codes without a class keep their name in ``.code``."""
    cls = _BY_CODE.get(code_name)
    if cls is None:
        exc = errors.EdgegradError(message, field=field)
        exc.code = code_name
        return exc
    return cls(message, field=field)


def _bad_request(rich: status_pb2.Status) -> tuple[str, str] | None:
    """(field, description) of the first google.rpc.BadRequest field violation, if any."""
    for detail in rich.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            if bad.field_violations:
                violation = bad.field_violations[0]
                return violation.field, violation.description
    return None


def _rich_status(metadata: Any) -> status_pb2.Status | None:
    """The google.rpc.Status carried in trailing metadata, if the server sent one."""
    for key, value in metadata or ():
        if key == _DETAILS_KEY:
            try:
                return status_pb2.Status.FromString(value)
            except Exception:  # a garbled trailer is not worth a second error
                return None
    return None


def from_rpc_error(exc: grpc.RpcError) -> errors.EdgegradError:
    """The edgegrad exception for a failed call (sync ``grpc.RpcError`` or ``grpc.aio.AioRpcError``)."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    message = (exc.details() if hasattr(exc, "details") else None) or str(code.name if code else "UNKNOWN")
    try:
        metadata = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    except Exception:
        metadata = None
    field = None
    rich = _rich_status(metadata)
    if rich is not None:
        violation = _bad_request(rich)
        if violation is not None:
            field, description = violation
            message = description or message
    return _make(code.name if code is not None else "UNKNOWN", message, field or None)


def from_status(status: status_pb2.Status, default: str) -> errors.EdgegradError:
    """The edgegrad exception for a google.rpc.Status stored in a job (``default`` code if unset)."""
    try:
        name = grpc.StatusCode(_code_tuple(status.code)).name if status.code else default
    except ValueError:
        name = default
    field = None
    violation = _bad_request(status)
    message = status.message or name
    if violation is not None:
        field, message = violation[0] or None, violation[1] or message
    return _make(name, message, field)


def _code_tuple(number: int) -> tuple[int, str]:
    """The (number, name) tuple grpc.StatusCode uses as its values."""
    for member in grpc.StatusCode:
        if member.value[0] == number:
            return member.value
    raise ValueError(number)


def job_error(job: job_pb2.Job) -> errors.EdgegradError:
    """The exception a finished but unsuccessful job stands for: JobFailed, Cancelled or the job's own code."""
    if job.state == job_pb2.JOB_STATE_CANCELLED:
        message = job.error.message or f"{job.name}: cancelled"
        return errors.Cancelled(message)
    name = None
    if job.error.code:
        try:
            name = grpc.StatusCode(_code_tuple(job.error.code)).name
        except ValueError:
            name = None
    # Request problems found by a worker keep their class; anything else is a failed job.
    if name in ("INVALID_ARGUMENT", "NOT_FOUND", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION"):
        return from_status(job.error, "ABORTED")
    return errors.JobFailed(job.error.message or f"{job.name}: failed")


def is_retryable(exc: BaseException) -> bool:
    """Whether a failed call may be sent again after a pause."""
    return isinstance(exc, grpc.RpcError) and hasattr(exc, "code") and exc.code() in RETRYABLE
