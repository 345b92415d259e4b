"""Submissions ``Client.submit`` returns from at once: a sender thread sends them in SubmitJobs batches.

A plain loop of ``submit()`` then should not pay one round trip per job: while one call is on the
wire, the next submissions queue, and the sender takes them all in its next call (nothing waits on
purpose, as with Nagle's algorithm: a submission alone goes at once, as a Compute stream whose events
its ``wait()`` then reads). Each handle's name and first state arrive with its call's answer; the
handle waits for them where it needs them (``PendingSubmit``), and raises the server's refusal there.
Only submissions ``deferral.may_defer`` vouches for come here.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from typing import TYPE_CHECKING, NamedTuple

from edgegrad.errors import Cancelled, DeadlineExceeded, NotFound
from edgegrad.model.network import Network

from .options import Deadline
from .protocol import Prepared, network_lost

if TYPE_CHECKING:
    from .job import JobHandle
    from .sync import Client

__all__ = ["PendingSubmit", "Submitter"]


class PendingSubmit:
    """A submission not answered yet: ``wait`` blocks until its handle is filled in, or raises its refusal."""

    def __init__(self) -> None:
        self._answered = threading.Event()
        self.error: BaseException | None = None

    @property
    def answered(self) -> bool:
        """Whether the answer (or refusal) is in."""
        return self._answered.is_set()

    def settle(self, error: BaseException | None = None) -> None:
        """Record the answer (the handle was filled in) or the refusal, and wake the waiters."""
        self.error = error
        self._answered.set()

    def wait(self, deadline: Deadline | None = None) -> None:
        """Block until answered (DeadlineExceeded past ``deadline``); raise the refusal, if any."""
        if not self._answered.wait(None if deadline is None else deadline.remaining()):
            raise DeadlineExceeded("submit: the deadline passed before the server answered")
        if self.error is not None:
            raise self.error


class _Entry(NamedTuple):
    handle: JobHandle
    net: Network
    prepared: Prepared
    deadline: Deadline


def _latest(entries: list[_Entry]) -> Deadline:
    """The deadline of a call carrying ``entries``: the latest of theirs (none if any has none)."""
    best = entries[0].deadline
    for entry in entries[1:]:
        left, best_left = entry.deadline.remaining(), best.remaining()
        if left is None or (best_left is not None and left > best_left):
            best = entry.deadline
    return best


#: seconds a sender thread with nothing to send waits before it ends (a client left open holds no thread)
IDLE_SECONDS = 5.0
#: seconds the interpreter's exit waits for each client's queued submissions (a script that submits and ends)
EXIT_FLUSH_SECONDS = 30.0
_LIVE: weakref.WeakSet[Submitter] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    """Send what clients still hold queued before the interpreter stops their sender threads."""
    for submitter in list(_LIVE):
        submitter.flush(EXIT_FLUSH_SECONDS)


class Submitter:
    """One client's queue of deferred submissions and the daemon thread that sends them (flushed at exit)."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._queue: list[_Entry] = []
        self._busy = False  # a call is on the wire
        self._closed = False
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        _LIVE.add(self)

    def add(self, handle: JobHandle, net: Network, prepared: Prepared, deadline: Deadline) -> None:
        """Queue ``prepared`` for the next call; ``handle`` is filled in when the server answers."""
        with self._wake:
            if self._closed:
                raise Cancelled("submit: the client is closed")
            self._queue.append(_Entry(handle, net, prepared, deadline))
            if self._thread is None or not self._thread.is_alive():  # (not alive: this is a forked child)
                self._thread = threading.Thread(target=self._run, name="edgegrad-submit", daemon=True)
                self._thread.start()
            self._wake.notify_all()

    def holding(self) -> bool:
        """Whether submissions are queued or on the wire."""
        with self._wake:
            return bool(self._queue) or self._busy

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued submission is answered; False if ``timeout`` passed first."""
        with self._wake:
            return self._wake.wait_for(lambda: not self._queue and not self._busy, timeout)

    def close(self, timeout: float | None) -> None:
        """Send what is queued (for up to ``timeout`` seconds), then stop; what is left is refused as Cancelled."""
        self.flush(timeout)
        with self._wake:
            self._closed = True
            left, self._queue = self._queue, []
            self._wake.notify_all()
        for entry in left:
            entry.handle._pending_settle(Cancelled("submit: the client was closed before the job was sent"))

    # ------------------------------------------------------------ the sender thread
    def _run(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: bool(self._queue) or self._closed, IDLE_SECONDS)
                if not self._queue:  # closed, or idle: a later submission starts a new thread
                    self._thread = None
                    return
                batch, self._queue = self._queue, []
                self._busy = True
            try:
                self._send(batch)
            except BaseException as exc:  # an outage past the deadline, a closed channel: each job is told
                for entry in batch:
                    entry.handle._pending_settle(exc, only_unsettled=True)
            finally:
                with self._wake:
                    self._busy = False
                    self._wake.notify_all()

    def _send(self, batch: list[_Entry]) -> None:
        """One job alone on a known network: a Compute stream (its wait() reads it); else SubmitJobs."""
        client = self._client
        if len(batch) == 1 and client._is_known(batch[0].net.content_hash) and client.streams_ahead.try_take():
            entry = batch[0]
            entry.handle._submit = entry.prepared.inline()
            try:
                entry.handle._open_ahead(entry.deadline)  # gives the stream back if it fails
            except NotFound as exc:
                if not network_lost(exc):
                    raise
                entry.handle._submit = None
                client._forget(entry.net)  # sent again below, carrying its network
            else:
                entry.handle._pending_settle(None)
                return
        answers = client._submit_jobs([(e.net, e.prepared) for e in batch], _latest(batch))
        for entry, answer in zip(batch, answers):
            if isinstance(answer, Exception):
                entry.handle._pending_settle(answer)
            else:
                entry.handle.state.update(answer)
                entry.handle._pending_settle(None)
                client.unwatched.add(entry.handle)

    def __repr__(self) -> str:
        return f"Submitter(queued={len(self._queue)}, busy={self._busy})"

