"""Where the server turns edgegrad errors (and Redis failures) into gRPC statuses; the codes and the
google.rpc.Status it sends are ``edgegrad.status``'s."""

from __future__ import annotations

import grpc
import redis.exceptions

from edgegrad.errors import EdgegradError, ResourceExhausted, Unavailable
from edgegrad.status import DETAILS_KEY, rich_status

__all__ = ["status_code", "rich_status", "abort", "SERVICE_ERRORS", "as_edgegrad_error"]

#: what a handler turns into a status: our errors, and Redis being unreachable (UNAVAILABLE, so
#: clients retry) rather than an opaque UNKNOWN
SERVICE_ERRORS = (EdgegradError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


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


async def abort(context: grpc.aio.ServicerContext, exc: BaseException) -> None:
    """End the call with the status of ``exc`` (raises, as ``context.abort`` does)."""
    exc = as_edgegrad_error(exc)
    status = rich_status(exc)
    await context.abort(status_code(exc), exc.message,
                        trailing_metadata=((DETAILS_KEY, status.SerializeToString()),))
