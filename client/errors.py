"""gRPC failures as ``edgegrad.errors`` exceptions: the client's one mapping place (the policy is in
``edgegrad.status``, which also turns failed jobs into exceptions)."""

from __future__ import annotations

from typing import Any

import grpc
from google.rpc import status_pb2

from edgegrad import errors
from edgegrad.status import DETAILS_KEY, RETRYABLE, STREAM_DROPPED, error_for, field_violation, from_status, job_error

__all__ = ["from_rpc_error", "from_status", "job_error", "is_retryable", "stream_dropped"]


def _rich_status(metadata: Any) -> status_pb2.Status | None:
    """The google.rpc.Status carried in trailing metadata, if the server sent one."""
    for key, value in metadata or ():
        if key == DETAILS_KEY:
            try:
                return status_pb2.Status.FromString(value)
            except Exception:  # a garbled trailer is not worth a second error
                return None
    return None


def _code_name(exc: BaseException) -> str | None:
    """The status code name of a failed call (None for anything else)."""
    code = exc.code() if isinstance(exc, grpc.RpcError) and hasattr(exc, "code") else None
    return code.name if code is not None else None


def from_rpc_error(exc: grpc.RpcError) -> errors.EdgegradError:
    """The edgegrad exception for a failed call (sync ``grpc.RpcError`` or ``grpc.aio.AioRpcError``)."""
    name = _code_name(exc) or "UNKNOWN"
    message = (exc.details() if hasattr(exc, "details") else None) or name
    try:
        metadata = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    except Exception:
        metadata = None
    field = None
    rich = _rich_status(metadata)
    if rich is not None:
        violation = field_violation(rich)
        if violation is not None:
            field, description = violation
            message = description or message
    return error_for(name, message, field or None)


def is_retryable(exc: BaseException) -> bool:
    """Whether a failed call may be sent again after a pause."""
    return _code_name(exc) in RETRYABLE


def stream_dropped(exc: BaseException) -> bool:
    """Whether a failed watch stream lost its connection (resume it) rather than got an answer.

    UNAVAILABLE is a lost connection; CANCELLED is a stream cut under the client (a server going
    away, or ``drop_stream``). The client's own deadline shows as DEADLINE_EXCEEDED, never here.
    """
    return _code_name(exc) in STREAM_DROPPED
