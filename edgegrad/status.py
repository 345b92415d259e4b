"""Status codes and their policy, free of grpc: numbers and names, retries, and errors to and from
``google.rpc.Status`` (the server's trailer and a job's stored error use the same one)."""

from __future__ import annotations

from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from . import errors
from .v1 import job_pb2

__all__ = ["CODE_NUMBERS", "DETAILS_KEY", "RETRYABLE", "STREAM_DROPPED", "code_name", "error_for", "rich_status",
           "from_status", "job_error"]

#: status code name (as ``grpc.StatusCode`` and ``EdgegradError.code`` spell it) -> google.rpc.Code number
CODE_NUMBERS: dict[str, int] = dict(code_pb2.Code.items())
#: the trailing-metadata key that carries a serialized google.rpc.Status
DETAILS_KEY = "grpc-status-details-bin"
#: codes a client may send again after a pause: the call never reached a server that could answer it
RETRYABLE = frozenset({"UNAVAILABLE"})
#: codes that end a watch stream because its connection was lost or cut (resume it), not with an answer
STREAM_DROPPED = frozenset({"UNAVAILABLE", "CANCELLED"})
#: codes of a failed job that stand for a problem with its request: the job's error keeps their class
_REQUEST_PROBLEMS = frozenset({"INVALID_ARGUMENT", "NOT_FOUND", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION"})


def code_name(number: int, default: str) -> str:
    """The name of a google.rpc.Code number (``default`` for 0 or a number no code has)."""
    if not number:
        return default
    try:
        return code_pb2.Code.Name(number)
    except ValueError:
        return default


def _classes() -> dict[str, type[errors.EdgegradError]]:
    """Status-code name -> the error class tagged with it, taken from edgegrad.errors."""
    found: dict[str, type[errors.EdgegradError]] = {}
    for name in errors.__all__:
        cls = getattr(errors, name)
        if isinstance(cls, type) and issubclass(cls, errors.EdgegradError) and cls is not errors.EdgegradError:
            found.setdefault(cls.code, cls)
    return found


_BY_CODE = _classes()


def error_for(code: str, message: str, field: str | None = None) -> errors.EdgegradError:
    """An instance of the class for ``code``; codes without a class keep their name in ``.code``."""
    cls = _BY_CODE.get(code)
    if cls is None:
        exc = errors.EdgegradError(message, field=field)
        exc.code = code
        return exc
    return cls(message, field=field)


def rich_status(exc: errors.EdgegradError) -> status_pb2.Status:
    """google.rpc.Status for ``exc``; an error about a place (``exc.field``) carries it as a BadRequest
    field violation."""
    status = status_pb2.Status(code=CODE_NUMBERS.get(exc.code, code_pb2.INTERNAL), message=exc.message)
    if exc.code == "INVALID_ARGUMENT" or exc.field:
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=exc.field or "", description=exc.message)]))
        status.details.append(detail)
    return status


def field_violation(status: status_pb2.Status) -> tuple[str, str] | None:
    """(field, description) of the first google.rpc.BadRequest field violation, if any."""
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            if bad.field_violations:
                violation = bad.field_violations[0]
                return violation.field, violation.description
    return None


def from_status(status: status_pb2.Status, default: str) -> errors.EdgegradError:
    """The edgegrad exception for a google.rpc.Status stored in a job (``default`` code if unset)."""
    name = code_name(status.code, default)
    field = None
    violation = field_violation(status)
    message = status.message or name
    if violation is not None:
        field, message = violation[0] or None, violation[1] or message
    return error_for(name, message, field)


def job_error(job: job_pb2.Job) -> errors.EdgegradError:
    """The exception a finished but unsuccessful job stands for: JobFailed, Cancelled or the job's own code."""
    if job.state == job_pb2.JOB_STATE_CANCELLED:
        return errors.Cancelled(job.error.message or f"{job.name}: cancelled")
    # Request problems found by a worker keep their class; anything else is a failed job.
    if code_name(job.error.code, "") in _REQUEST_PROBLEMS:
        return from_status(job.error, "ABORTED")
    return errors.JobFailed(job.error.message or f"{job.name}: failed")
