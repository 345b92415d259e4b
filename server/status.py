"""The one place where edgegrad errors become gRPC statuses (with google.rpc details)."""

from __future__ import annotations

import grpc
import redis.exceptions
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from edgegrad.errors import EdgegradError, ResourceExhausted, Unavailable
from edgegrad.jobs.record import GRPC_CODE_NUMBERS

__all__ = ["status_code", "rich_status", "abort", "SERVICE_ERRORS", "as_edgegrad_error"]

#: what a handler turns into a status: our errors, and Redis being unreachable (UNAVAILABLE, so
#: clients retry) rather than an opaque UNKNOWN
SERVICE_ERRORS = (EdgegradError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)

_DETAILS_KEY = "grpc-status-details-bin"


def as_edgegrad_error(exc: BaseException) -> EdgegradError:
    """``exc`` itself; ResourceExhausted when all stream connections are taken; else Unavailable."""
    if isinstance(exc, EdgegradError):
        return exc
    if isinstance(exc, redis.exceptions.MaxConnectionsError):
        return ResourceExhausted("server: too many open streams (EDGEGRAD_MAX_STREAMS); try again later")
    return Unavailable(f"redis: {type(exc).__name__}: {exc}; try again")


def status_code(exc: EdgegradError) -> grpc.StatusCode:
    """The grpc.StatusCode named by ``exc.code``."""
    return getattr(grpc.StatusCode, exc.code, grpc.StatusCode.INTERNAL)


def rich_status(exc: EdgegradError) -> status_pb2.Status:
    """google.rpc.Status for ``exc``; INVALID_ARGUMENT carries a BadRequest field violation."""
    status = status_pb2.Status(code=GRPC_CODE_NUMBERS.get(exc.code, 13), message=exc.message)
    if exc.code == "INVALID_ARGUMENT":
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=exc.field or "", description=exc.message)]))
        status.details.append(detail)
    return status


async def abort(context: grpc.aio.ServicerContext, exc: BaseException) -> None:
    """End the call with the status of ``exc`` (raises, as ``context.abort`` does)."""
    exc = as_edgegrad_error(exc)
    status = rich_status(exc)
    await context.abort(status_code(exc), exc.message,
                        trailing_metadata=((_DETAILS_KEY, status.SerializeToString()),))
