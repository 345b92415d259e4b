"""``JobHandle``: one submitted job seen from the blocking client, with a self-resuming chunk stream."""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from typing import Any

import grpc

from edgegrad.engine.result import GradientResult
from edgegrad.errors import DeadlineExceeded
from edgegrad.v1 import job_pb2
from edgegrad.wire.rawchunk import RawChunk, as_message

from .alarms import ALARMS, Alarm
from .base import HandleBase
from .errors import from_rpc_error, stream_dropped
from .group import open_group
from .options import Deadline
from .protocol import Resume

__all__ = ["JobHandle"]


def _cut_at(call: Any, deadline: Deadline) -> Alarm | None:
    """Cancel ``call`` when ``deadline`` passes (None without a deadline); one thread serves every such alarm."""
    left = deadline.remaining()
    if left is None:
        return None
    return ALARMS.after(left, call.cancel)


class JobHandle(HandleBase):
    """A job on the service: ``wait()``, ``result()``, ``cancel()``, and ``chunks()`` that resumes on its own.

    Chunks are kept as they arrive, so ``result()`` after ``chunks()`` costs nothing more. If the
    stream drops (server restart, network trouble), the handle reconnects with ``WatchJob(after_seq)``
    and continues with no gap and no duplicate.
    """

    # ------------------------------------------------------------ stream
    def chunks(self, timeout: float | None = None, *, deadline: Deadline | None = None) -> Iterator[job_pb2.ResultChunk]:
        """Result chunks in seq order, from where this handle left off, until the job ends."""
        for chunk in self._chunks(deadline or self.client._deadline(timeout)):
            yield as_message(chunk)

    def chunk_views(self, timeout: float | None = None) -> Iterator[job_pb2.ResultChunk | RawChunk]:
        """``chunks()`` without parsing: mostly RawChunks whose data views the received bytes (no copy).

        For a reader that copies each chunk on at once (``edgegrad.wire.rawchunk.chunk_values`` reads either
        kind); a view is valid while the chunk is referenced.
        """
        return self._chunks(self.client._deadline(timeout))

    def _chunks(self, deadline: Deadline) -> Generator[job_pb2.ResultChunk | RawChunk, None, None]:
        """``chunks()`` as they were read (the messages are made only for callers of ``chunks()``)."""
        if self._pending is not None or self._may_share():  # a loop's: let the loop's other submissions be
            self.client._submitter.flush(deadline.remaining())  # answered too, so that one shared watch takes them all
        self._settle(deadline)
        yield from self._grouped(deadline)
        resume = Resume(self.state, self.client.backoff, deadline)
        while not self.state.done:
            self._call = call = self._open(deadline)
            resume.opened()
            # a stream opened at submit has no deadline of its own: this wait's deadline cuts it
            timer = _cut_at(call, deadline) if self._submit is not None else None
            try:
                for event in call:
                    chunk = self.state.feed(event)
                    if chunk is not None:
                        yield chunk
                        self._acknowledge(deadline)
                    if self.state.done:
                        break
            except grpc.RpcError as exc:
                if timer is not None and deadline.expired():
                    raise DeadlineExceeded(f"{self.name}: the deadline passed before the job finished") from None
                last_error = resume.failed(from_rpc_error(exc), stream_dropped(exc))
            else:
                last_error = resume.ended()
            finally:
                if timer is not None:
                    timer.cancel()
                call.cancel()
                self._call = None
            if self.state.done:
                break
            time.sleep(self._resuming(resume, last_error))

    def _may_share(self) -> bool:
        """Whether this handle's wait would open a shared watch while submissions of the client's loop are still
        unanswered (it was sent on its own, by SubmitJob: a pause in the loop longer than LOOP_GAP_SECONDS)."""
        return self._group is None and self._may_read_a_group() and self.client._submitter.holding()

    def _grouped(self, deadline: Deadline) -> Iterator[job_pb2.ResultChunk | RawChunk]:
        """Chunks from the WatchJobs stream this job shares with others (opened now if it is the first of them
        waited on); whatever the group cannot bring, ``chunks()`` then reads from the job's own stream."""
        group = self._group_to_read(open_group)
        if group is None:
            return
        for event in group.events(self.name, deadline):
            chunk = self.state.feed(event)
            if chunk is not None:
                yield chunk
                self._acknowledge(deadline)  # not for the small results a group takes; kept in step with chunks()
            if self.state.done:
                return

    def _acknowledge(self, deadline: Deadline) -> None:
        """Acknowledge the chunks read so far, when due (``_ack_seq``)."""
        seq = self._ack_seq()
        if seq is not None:
            self.client._ack(self.name, seq, timeout=deadline.remaining())
            self.state.acked = seq

    def _open_ahead(self, deadline: Deadline) -> None:
        """Send the submission as a Compute stream now and read up to the job's first state (its name).

        The stream stays open for ``chunks()``/``wait()``; retried on UNAVAILABLE (the request id
        makes a retry return the same job).
        """
        def first(left: float | None) -> Any:
            call = self.client.streams.Compute(self._submit, metadata=self.client._metadata)  # wait() bounds it
            timer = _cut_at(call, deadline)  # ... and the submit's own deadline its first event
            try:
                for event in call:
                    self.state.feed(event)
                    if self.state.name:
                        return call
            except grpc.RpcError:
                call.cancel()
                if deadline.expired():
                    raise DeadlineExceeded("submit: the deadline passed before the server answered") from None
                raise
            except BaseException:
                call.cancel()
                raise
            finally:
                if timer is not None:
                    timer.cancel()
            return call

        with self._giving_back_stream_ahead():
            self._ahead = self.client._retrying(first, deadline)

    def _drop_stream(self) -> None:
        """Cut the current stream as a network failure would (the iterator then resumes); for tests and tools."""
        call = self._call
        if call is not None:
            call.cancel()

    # ------------------------------------------------------------ waiting
    def wait(self, timeout: float | None = None, *, deadline: Deadline | None = None) -> job_pb2.Job:
        """Block until the job ends (all chunks received); return the final job."""
        for _ in self._chunks(deadline or self.client._deadline(timeout)):
            pass
        assert self.state.job is not None
        return self.state.job

    def result(self, timeout: float | None = None, *, deadline: Deadline | None = None) -> GradientResult:
        """The job's GradientResult; JobFailed, Cancelled or the job's own error if it did not succeed."""
        self.wait(deadline=deadline or self.client._deadline(timeout))
        return self.state.result()

    # ------------------------------------------------------------ control
    def refresh(self, timeout: float | None = None) -> job_pb2.Job:
        """Fetch the job's current state with GetJob."""
        return self.client.get_job(self.name, timeout=timeout)

    def cancel(self, timeout: float | None = None) -> job_pb2.Job:
        """Ask the service to cancel the job (honoured between chunks); return its state after the request."""
        return self.client.cancel_job(self.name, timeout=timeout)

    def delete(self, timeout: float | None = None) -> None:
        """Delete the job and its result on the service."""
        self.client.delete_job(self.name, timeout=timeout)
