"""One error hierarchy for the whole project, each class tagged with its gRPC status code.

The gRPC front end maps exceptions to status codes through ``EdgegradError.code`` alone, so
adding a new error means adding a class here and nowhere else.
"""

from __future__ import annotations

__all__ = [
    "EdgegradError",
    "InvalidInput",
    "NotFound",
    "AlreadyExists",
    "Unauthenticated",
    "ResourceExhausted",
    "FailedPrecondition",
    "OutOfRange",
    "Cancelled",
    "Unavailable",
    "DeadlineExceeded",
    "JobFailed",
    "MissingExtra",
]


class EdgegradError(Exception):
    """Base class of every error edgegrad raises on purpose."""

    code: str = "INTERNAL"  #: name of the matching ``grpc.StatusCode`` member

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field  #: the place the problem is about, e.g. ``edges[3].dst``


class InvalidInput(EdgegradError):
    """A network, a batch or a request that breaks the contract; the message names the place."""

    code = "INVALID_ARGUMENT"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        if field is None and ": " in message:
            field = message.split(": ", 1)[0]
        super().__init__(message, field=field)


class NotFound(EdgegradError):
    """An unknown or expired job or network."""

    code = "NOT_FOUND"


class AlreadyExists(EdgegradError):
    """A request id reused for a different request."""

    code = "ALREADY_EXISTS"


class Unauthenticated(EdgegradError):
    """A missing or wrong bearer token."""

    code = "UNAUTHENTICATED"


class ResourceExhausted(EdgegradError):
    """A request over one of the service's stated limits."""

    code = "RESOURCE_EXHAUSTED"


class FailedPrecondition(EdgegradError):
    """An operation that does not fit the job's current state."""

    code = "FAILED_PRECONDITION"


class OutOfRange(EdgegradError):
    """A position past the end, such as resuming after the last chunk of a job."""

    code = "OUT_OF_RANGE"


class Cancelled(EdgegradError):
    """A job that was cancelled before it finished."""

    code = "CANCELLED"


class Unavailable(EdgegradError):
    """The service or its Redis cannot be reached."""

    code = "UNAVAILABLE"


class DeadlineExceeded(EdgegradError):
    """A call that did not finish before its deadline."""

    code = "DEADLINE_EXCEEDED"


class JobFailed(EdgegradError):
    """A job that ended in failure on the worker; the message says why."""

    code = "ABORTED"


class MissingExtra(EdgegradError, ImportError):
    """An optional library that a feature needs is not installed; the message names the extra."""

    code = "FAILED_PRECONDITION"
