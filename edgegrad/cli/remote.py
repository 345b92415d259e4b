"""What the commands that talk to a server share: its address, the client, and one mapping of failures.

An unreachable server ends with exit status 3, a failed or cancelled job with 1, anything the
server refuses as bad input with 2; each as one ``error:`` line naming the server or the job.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

from ..errors import Cancelled, DeadlineExceeded, EdgegradError, InvalidInput, JobFailed, Unavailable
from .common import EXIT_BAD_INPUT, EXIT_JOB_FAILED, EXIT_UNREACHABLE, CommandFailure, rpc_message

__all__ = ["SERVER_ENV", "TARGET_FORMS", "CONNECT_TIMEOUT_SECONDS",
           "CLI_RETRY_SECONDS", "STREAM_RETRY_SECONDS", "stream_backoff", "add_server_argument",
           "server_address", "connect", "reaching", "job_name", "remote_gradients", "cancel_on_interrupt",
           "job_failure", "say", "HeldInterrupts"]

SERVER_ENV = "EDGEGRAD_SERVER"
#: seconds a command waits for a server's first answer (an address where nothing answers, not even a refusal)
CONNECT_TIMEOUT_SECONDS = 5.0
#: seconds of pauses between retries, once the server has answered, before a command gives up on it
CLI_RETRY_SECONDS = 5.0
#: seconds a result stream that dropped keeps trying to resume (a server restart) before giving up
STREAM_RETRY_SECONDS = 30.0


def stream_backoff() -> Any:
    """The retries of a result stream once the server has answered: long enough for a restart."""
    from ..client import Backoff

    return Backoff(give_up_after=STREAM_RETRY_SECONDS)


def add_server_argument(parser: argparse.ArgumentParser) -> None:
    """``--server HOST:PORT`` (default: $EDGEGRAD_SERVER)."""
    parser.add_argument("--server", metavar="HOST:PORT", default=None,
                        help=f"the edgegrad server (default: ${SERVER_ENV}); a token comes from $EDGEGRAD_TOKEN")


def server_address(given: str | None) -> str:
    """The server to use: ``--server`` or $EDGEGRAD_SERVER; InvalidInput if neither names one, or names no
    gRPC target."""
    value = given if given is not None else os.environ.get(SERVER_ENV)
    if value is None:
        raise InvalidInput(f"--server: required (HOST:PORT), or set {SERVER_ENV}")
    source = "--server" if given is not None else SERVER_ENV
    if not value.strip():
        raise InvalidInput(f"{source}: expected HOST:PORT, got an empty string")
    value = value.strip()
    if not _is_target(value):
        raise InvalidInput(f"{source}: expected {TARGET_FORMS}, got {value[:200]!r}")
    return value


#: the server address forms the commands accept, as the error message names them
TARGET_FORMS = "HOST:PORT, [IPV6]:PORT, unix:PATH or a gRPC URI such as dns:///HOST:PORT"
#: gRPC name-resolver schemes (``scheme:...``) passed to gRPC as they are
_SCHEMES = ("unix:", "unix-abstract:", "dns:", "ipv4:", "ipv6:", "vsock:", "xds:")
#: the URL schemes the SDK takes off the front (TLS or not)
_URL_SCHEMES = ("grpc://", "http://", "grpcs://", "https://")


def _is_target(value: str) -> bool:
    """Whether ``value`` is a gRPC target: a resolver URI, or HOST:PORT / [IPV6]:PORT with a port number."""
    if value.startswith(_SCHEMES):
        return True
    for scheme in _URL_SCHEMES:
        if value.startswith(scheme):
            value = value[len(scheme):].rstrip("/")
    host, colon, port = value.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return False
    if host.startswith("["):
        return host.endswith("]") and len(host) > 2
    return ":" not in host and not any(c.isspace() or c == "/" for c in host)


def job_name(name: str) -> str:
    """``jobs/<id>`` from either ``jobs/<id>`` or a bare ``<id>``."""
    name = name.strip()
    if not name:
        raise InvalidInput("NAME: expected a job name (jobs/<id>), got an empty string")
    return name if name.startswith("jobs/") else f"jobs/{name}"


def say(line: str) -> None:
    """One line on stderr (the commands' running commentary; stdout stays for results)."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


@contextlib.contextmanager
def connect(server: str) -> Iterator[Any]:
    """A ``Client`` on ``server``, failures mapped: it first waits for the server's answer (a refused connection
    is reported at once, a silent address after CONNECT_TIMEOUT_SECONDS), then retries calls for CLI_RETRY_SECONDS."""
    with reaching(server):
        from ..client import Backoff, Client  # grpc is imported only by commands that reach a server

        with Client(server, backoff=Backoff(attempts=1)) as client:
            _first_answer(client)
            # the server answered: a command line still should not sit long on one that went away
            client.backoff = Backoff(give_up_after=CLI_RETRY_SECONDS)
            yield client


#: words of gRPC's connect errors that settle the matter at once: nothing listens there, or no such host
_DEFINITE = ("connection refused", "no such file or directory", "domain name not found")


def _first_answer(client: Any) -> None:
    """Ask for the server's capabilities until it answers, a connect error settles it (a refusal, no such
    host or socket) or CONNECT_TIMEOUT_SECONDS pass (an address where nothing answers, or a slow handshake)."""
    end = time.monotonic() + CONNECT_TIMEOUT_SECONDS
    while True:
        try:
            client.capabilities(timeout=max(0.001, end - time.monotonic()))
            return
        except Unavailable as exc:
            if time.monotonic() >= end or any(words in exc.message.lower() for words in _DEFINITE):
                raise
            time.sleep(min(0.1, max(0.0, end - time.monotonic())))


@contextlib.contextmanager
def reaching(server: str) -> Iterator[None]:
    """Turn service failures into CommandFailure with the right exit status; bad input passes through."""
    try:
        yield
    except InvalidInput:
        raise
    except (Unavailable, DeadlineExceeded) as exc:
        raise CommandFailure(f"server {server}: unreachable ({exc.message})", EXIT_UNREACHABLE) from None
    except (JobFailed, Cancelled) as exc:
        raise CommandFailure(exc.message, EXIT_JOB_FAILED) from None
    except EdgegradError as exc:
        raise CommandFailure(f"server {server}: {exc.message}", EXIT_BAD_INPUT) from None
    except Exception as exc:  # grpc.RpcError without importing grpc here
        message = rpc_message(exc)
        if message is None:
            raise
        raise CommandFailure(f"server {server}: {message}", EXIT_BAD_INPUT) from None


def job_failure(job: Any) -> CommandFailure:
    """The exit-1 failure for a job that ended FAILED or CANCELLED."""
    from ..v1 import job_pb2

    what = "was cancelled" if job.state == job_pb2.JOB_STATE_CANCELLED else "failed"
    detail = f": {job.error.message}" if job.error.message else ""
    return CommandFailure(f"{job.name} {what}{detail}", EXIT_JOB_FAILED)


class HeldInterrupts:
    """Within the block, a first Ctrl-C is held until the block ends (a second one interrupts at once).

    Used where an interruption would lose track of something, such as a job the server created but
    whose name has not reached us yet. ``pending`` says whether one came; with ``reraise`` it is
    raised as KeyboardInterrupt when the block ends. Outside the main thread it holds nothing.
    """

    def __init__(self, reraise: bool = True) -> None:
        self.reraise = reraise
        self.pending = False
        self._previous: Any = None

    def _hold(self, signum: int, frame: Any) -> None:
        if self.pending:
            raise KeyboardInterrupt
        self.pending = True

    def __enter__(self) -> HeldInterrupts:
        try:
            self._previous = signal.signal(signal.SIGINT, self._hold)
        except ValueError:  # not the main thread
            self._previous = None
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        if self.pending and self.reraise and exc_type is None:
            raise KeyboardInterrupt


def remote_gradients(server: str, net: Any, x: Any, dtype: str, options: dict[str, Any]) -> Any:
    """``grad --server``: submit, wait for the result; Ctrl-C cancels the job before exiting."""
    with connect(server) as client:
        held = HeldInterrupts(reraise=False)
        with held:  # a Ctrl-C while submitting still learns the job's name, so it can be cancelled
            handle = client.submit(net, x, dtype=dtype, **options)
        try:
            if held.pending:
                raise KeyboardInterrupt
            return handle.result()
        except KeyboardInterrupt:
            cancel_on_interrupt(client, handle.name)
            raise


def cancel_on_interrupt(client: Any, name: str) -> None:
    """Cancel ``name`` after a Ctrl-C, saying so on stderr (a second Ctrl-C stops waiting for it)."""
    from ..jobs.contract import state_name
    from ..v1 import job_pb2

    try:
        job = client.cancel_job(name, timeout=CLI_RETRY_SECONDS)
        if job.state == job_pb2.JOB_STATE_CANCELLED:
            say(f"interrupted: cancelled {name}")
        else:
            say(f"interrupted: {name} had already ended ({state_name(job.state)})")
    except KeyboardInterrupt:
        say(f"interrupted: {name} may still be running (edgegrad jobs cancel {name})")
    except Exception as exc:  # the server is gone too: say what is left behind
        message = exc.message if isinstance(exc, EdgegradError) else rpc_message(exc) or str(exc)
        say(f"interrupted: could not cancel {name} ({message})")
