"""``AsyncJobHandle``: the asyncio client's handle of one job (its watch, result, chunks, cancel)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from edgegrad.engine.result import GradientResult
from edgegrad.errors import DeadlineExceeded, Unavailable
from edgegrad.v1 import job_pb2, service_pb2
from edgegrad.wire.rawchunk import RawChunk, as_message

from .aiogroup import open_async_group
from .base import HandleBase
from .errors import from_rpc_error, stream_dropped
from .options import Deadline
from .protocol import Resume

if TYPE_CHECKING:  # pragma: no cover
    from .aio import AsyncClient

__all__ = ["AsyncJobHandle"]


async def _read(call: Any, deadline: Deadline) -> Any:
    """The stream's next message (or EOF), within ``deadline``."""
    left = deadline.remaining()
    if left is None:
        return await call.read()
    try:
        return await asyncio.wait_for(call.read(), left)
    except asyncio.TimeoutError:
        call.cancel()
        raise DeadlineExceeded("the deadline passed before the job finished") from None


class AsyncJobHandle(HandleBase):
    """The asyncio twin of ``JobHandle``: ``await wait()``, ``await result()``, ``async for c in chunks()``."""

    def __init__(self, client: AsyncClient, name: str, *,
                 submit: service_pb2.SubmitJobRequest | None = None, after_seq: int = 0,
                 assemble: bool = True, acknowledge: bool = True) -> None:
        super().__init__(client, name, submit=submit, after_seq=after_seq, assemble=assemble,
                         acknowledge=acknowledge)
        self._dropped = False

    async def chunks(self, timeout: float | None = None, *,
                     deadline: Deadline | None = None) -> AsyncIterator[job_pb2.ResultChunk]:
        """Result chunks in seq order until the job ends, resuming after dropped streams."""
        async for chunk in self._chunks(deadline or self.client._deadline(timeout)):
            yield as_message(chunk)

    async def _chunks(self, deadline: Deadline) -> AsyncGenerator[job_pb2.ResultChunk | RawChunk, None]:
        """``chunks()`` as they were read (the messages are made only for callers of ``chunks()``)."""
        async for grouped in self._grouped(deadline):
            yield grouped
        resume = Resume(self.state, self.client.backoff, deadline)
        while not self.state.done:
            self._dropped = False
            self._call = call = self._open(deadline)
            resume.opened()
            try:
                # read(), not async for: a stream opened at submit was read that way (gRPC forbids mixing);
                # such a stream has no deadline of its own, so this wait's deadline bounds each read
                while (event := await _read(call, deadline)) is not grpc.aio.EOF:
                    chunk = self.state.feed(event)
                    if chunk is not None:
                        yield chunk
                        await self._acknowledge(deadline)
                    if self.state.done:
                        break
            except grpc.RpcError as exc:
                last_error = resume.failed(from_rpc_error(exc), stream_dropped(exc) or self._dropped)
            except asyncio.CancelledError:
                # Either our own drop_stream() (resume) or the caller's task being cancelled (stop).
                if not self._dropped:
                    raise
                last_error = Unavailable(f"{self.name}: the watch stream was dropped")
            else:
                last_error = resume.ended()
            finally:
                call.cancel()
                self._call = None
            if self.state.done:
                break
            await asyncio.sleep(self._resuming(resume, last_error))

    async def _grouped(self, deadline: Deadline) -> AsyncIterator[job_pb2.ResultChunk | RawChunk]:
        """Chunks from the WatchJobs stream this job shares with others (opened now if it is the first of them
        waited on); whatever the group cannot bring, ``chunks()`` then reads from the job's own stream."""
        group = self._group_to_read(open_async_group)
        if group is None:
            return
        async for event in group.events(self.name, deadline):
            chunk = self.state.feed(event)
            if chunk is not None:
                yield chunk
                await self._acknowledge(deadline)  # not for the small results a group takes; as in chunks()
            if self.state.done:
                return

    async def _acknowledge(self, deadline: Deadline) -> None:
        """Acknowledge the chunks read so far, when due (``_ack_seq``)."""
        seq = self._ack_seq()
        if seq is not None:
            await self.client._ack(self.name, seq, timeout=deadline.remaining())
            self.state.acked = seq

    async def _open_ahead(self, deadline: Deadline) -> None:
        """Send the submission as a Compute stream now and read up to the job's first state (its name)."""
        async def first(left: float | None) -> Any:
            call = self.client.streams.Compute(self._submit, metadata=self.client._metadata)  # wait() bounds it
            try:
                while not self.state.name:
                    event = await asyncio.wait_for(call.read(), deadline.remaining())
                    if event is grpc.aio.EOF:
                        break
                    self.state.feed(event)
            except asyncio.TimeoutError:
                call.cancel()
                raise DeadlineExceeded("submit: the deadline passed before the server answered") from None
            except BaseException:
                call.cancel()
                raise
            return call

        with self._giving_back_stream_ahead():
            self._ahead = await self.client._retrying(first, deadline)

    def _drop_stream(self) -> None:
        """Cut the current stream as a network failure would (the iterator then resumes)."""
        call = self._call
        if call is not None:
            self._dropped = True
            call.cancel()

    async def wait(self, timeout: float | None = None, *, deadline: Deadline | None = None) -> job_pb2.Job:
        """Wait until the job ends (all chunks received); return the final job."""
        async for _ in self._chunks(deadline or self.client._deadline(timeout)):
            pass
        assert self.state.job is not None
        return self.state.job

    async def result(self, timeout: float | None = None, *, deadline: Deadline | None = None) -> GradientResult:
        """The job's GradientResult; JobFailed, Cancelled or the job's own error if it did not succeed."""
        await self.wait(deadline=deadline or self.client._deadline(timeout))
        return self.state.result()

    async def refresh(self, timeout: float | None = None) -> job_pb2.Job:
        """Fetch the job's current state with GetJob."""
        return await self.client.get_job(self.name, timeout=timeout)

    async def cancel(self, timeout: float | None = None) -> job_pb2.Job:
        """Ask the service to cancel the job."""
        return await self.client.cancel_job(self.name, timeout=timeout)

    async def delete(self, timeout: float | None = None) -> None:
        """Delete the job and its result on the service."""
        await self.client.delete_job(self.name, timeout=timeout)
