"""One error hierarchy for the whole project, each class tagged with its gRPC status code.

The gRPC front end maps exceptions to status codes through ``EdgegradError.code`` alone, so
adding a new error means adding a class here and nowhere else.
"""

from __future__ import annotations

import re

__all__ = [
    "bounded",
    "MAX_QUOTED_CHARS",
    "MAX_MESSAGE_BYTES",
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


#: longest run of characters without a space that a message quotes before it is cut (ids, names, hashes)
MAX_QUOTED_CHARS = 200
#: longest message in UTF-8 bytes: with the field and the google.rpc details it stays well inside a
#: client's default 8 KiB trailer limit, so the caller sees our status rather than RESOURCE_EXHAUSTED
MAX_MESSAGE_BYTES = 800
_ELLIPSIS = "…"
_LONG_RUN = re.compile(rf"\S{{{MAX_QUOTED_CHARS + 1},}}")


def bounded(text: str, max_bytes: int = MAX_MESSAGE_BYTES) -> str:
    """``text`` with every run of more than MAX_QUOTED_CHARS non-space characters cut to that many and an
    ellipsis, and the whole cut to ``max_bytes`` of UTF-8 (an ellipsis at the end): what a message
    quotes of a client's input stays small, however large the input was."""
    if len(text) <= MAX_QUOTED_CHARS and len(text.encode("utf-8", "replace")) <= max_bytes:
        return text
    text = _LONG_RUN.sub(lambda m: m.group(0)[:MAX_QUOTED_CHARS] + _ELLIPSIS, text)
    data = text.encode("utf-8", "replace")
    if len(data) <= max_bytes:
        return text
    return data[:max_bytes - len(_ELLIPSIS.encode())].decode("utf-8", "ignore") + _ELLIPSIS


class EdgegradError(Exception):
    """Base class of every error edgegrad raises on purpose; messages and fields are ``bounded``."""

    code: str = "INTERNAL"  #: name of the matching ``grpc.StatusCode`` member

    def __init__(self, message: str, *, field: str | None = None) -> None:
        message = bounded(message)
        super().__init__(message)
        self.message = message
        #: the place the problem is about, e.g. ``edges[3].dst``
        self.field = None if field is None else bounded(field, 4 * MAX_QUOTED_CHARS)


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
