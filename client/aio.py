"""``edgegrad.AsyncClient`` and its job handle: the asyncio (grpc.aio) client of the edgegrad service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
import grpc.aio

from edgegrad.engine.result import GradientResult
from edgegrad.errors import DeadlineExceeded, NotFound, Unavailable
from edgegrad.model.network import Network
from edgegrad.v1 import job_pb2, service_pb2, service_pb2_grpc
from edgegrad.wire.codec import network_to_proto
from edgegrad.wire.rawchunk import RawChunk, as_message

from .aiogroup import AsyncWatchGroup, open_async_group
from .base import ClientBase, EventStreams, HandleBase
from .errors import from_rpc_error, is_retryable, stream_dropped
from .options import DEFAULT_MAX_MESSAGE_BYTES, Backoff, Deadline
from .population_jobs import AsyncPopulationMethods
from .protocol import (
    Prepared,
    Resume,
    list_request,
    lost_networks,
    merge_submitted,
    network_lost,
    prepare,
    submission,
    submit_batches,
)

__all__ = ["AsyncClient", "AsyncJobHandle"]

T = TypeVar("T")
AH = TypeVar("AH", bound="AsyncJobHandle")


class AsyncClient(ClientBase, AsyncPopulationMethods):
    """The asyncio twin of ``Client``: ``async with edgegrad.AsyncClient(target) as c: await c.gradients(...)``.

    Same arguments, retries, deadlines, TLS and token handling as ``Client`` (``interceptors`` are
    ``grpc.aio`` client interceptors).
    """

    def __init__(self, target: str, *, timeout: float | None = None, tls: bool | None = None,
                 root_certificates: bytes | str | None = None, token: str | None = None,
                 backoff: Backoff | None = None, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 interceptors: Sequence[Any] = ()) -> None:
        super().__init__(target, timeout=timeout, tls=tls, root_certificates=root_certificates, token=token,
                         backoff=backoff, max_message_bytes=max_message_bytes)
        credentials = self.options.credentials()
        if credentials is None:
            self._channel = grpc.aio.insecure_channel(self.options.target, options=self.options.channel_options(),
                                                      interceptors=list(interceptors) or None)
        else:
            self._channel = grpc.aio.secure_channel(self.options.target, credentials,
                                                    options=self.options.channel_options(),
                                                    interceptors=list(interceptors) or None)
        self.stub = service_pb2_grpc.EdgegradStub(self._channel)
        self.streams = EventStreams(self._channel)  # watches: chunk data copied once, into the result
        self.groups: set[AsyncWatchGroup] = set()  #: shared WatchJobs streams being read (client/aiogroup.py)

    # ------------------------------------------------------------ lifecycle
    async def close(self) -> None:
        """Stop the shared watches' readers and close the channel."""
        groups, self.groups = list(self.groups), set()
        for group in groups:
            group.close()
        await asyncio.gather(*(group.stopped() for group in groups))
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


    # ------------------------------------------------------------ plumbing
    async def _retrying(self, call: Callable[[float | None], Awaitable[T]], deadline: Deadline) -> T:
        """Await ``call(timeout)``, retrying UNAVAILABLE with backoff until it answers or the deadline passes."""
        delays = self.backoff.delays(deadline)
        while True:
            try:
                return await call(deadline.remaining())
            except grpc.RpcError as exc:
                if not is_retryable(exc) or deadline.expired():
                    raise from_rpc_error(exc) from None
                delay = next(delays, None)
                if delay is None:
                    raise from_rpc_error(exc) from None
                await asyncio.sleep(deadline.clip(delay))

    async def _unary(self, method: Callable[..., Any], request: Any, timeout: float | None) -> Any:
        """Await the stub's ``method`` with retries under the operation's deadline."""
        return await self._retrying(lambda left: method(request, timeout=left, metadata=self._metadata),
                                   self._deadline(timeout))

    # ------------------------------------------------------------ API
    async def capabilities(self, timeout: float | None = None) -> service_pb2.Capabilities:
        """The server's limits, activations, losses and TTLs."""
        return await self._unary(self.stub.GetCapabilities, service_pb2.GetCapabilitiesRequest(), timeout)

    async def register(self, net: Network, timeout: float | None = None) -> str:
        """Make sure the server stores ``net`` (sent at most once per client); return its content hash."""
        digest = net.content_hash
        if self._is_known(digest):
            return digest
        try:
            await self._unary(self.stub.GetNetwork, service_pb2.GetNetworkRequest(hash=digest), timeout)
        except NotFound:
            await self._unary(self.stub.RegisterNetwork, service_pb2.RegisterNetworkRequest(network=network_to_proto(net)),
                              timeout)
        self._remember(digest)
        return digest

    async def _with_network(self, net: Network, deadline: Deadline, action: Callable[[], Awaitable[T]]) -> T:
        await self.register(net, timeout=deadline.remaining())
        try:
            return await action()
        except NotFound as exc:
            if not network_lost(exc):
                raise
            self._forget(net)
            await self.register(net, timeout=deadline.remaining())
            return await action()

    async def submit(self, net: Network, inputs: Any, targets: Any = None, loss: str | None = None,
                     reduction: str = "mean", per_example: bool = False, dtype: str = "float64",
                     timeout: float | None = None, request_id: str | None = None,
                     shard_rows: int | None = None,
                     upload_progress: Callable[[int, int], None] | None = None,
                     norms: bool = False, clip_norm: float | None = None) -> AsyncJobHandle:
        """Enqueue a job and return its handle at once (``shard_rows``: rows per shard; ``upload_progress``:
        told ``(rows_sent, rows_in_all)`` as each piece of a batch larger than one message is uploaded)."""
        prepared = prepare(net, inputs, targets, loss, reduction, per_example, dtype, request_id=request_id,
                           shard_rows=shard_rows, norms=norms,
                           clip_norm=clip_norm)._replace(upload_progress=upload_progress)
        deadline = self._deadline(timeout)

        async def send() -> AsyncJobHandle:
            return await self._send(await self._request(prepared, deadline), deadline, AsyncJobHandle)

        return await self._with_network(net, deadline, send)

    async def _send(self, request: service_pb2.SubmitJobRequest, deadline: Deadline, handle_type: type[AH]) -> AH:
        """Submit ``request``; its handle reads the Compute stream opened now, or a WatchJobs stream later."""
        if self.streams_ahead.try_take():
            # submit and watch in one call (Compute): wait() later reads the same stream, so
            # submit() then wait() pays one round trip per job, not two
            handle = handle_type(self, "", submit=request)
            await handle._open_ahead(deadline)
            return handle
        job = await self._retrying(
            lambda left: self.stub.SubmitJob(request, timeout=left, metadata=self._metadata), deadline)
        handle = handle_type(self, job.name)
        handle.state.update(job)
        self.unwatched.add(handle)  # its wait() may share one WatchJobs stream with the next ones
        return handle

    async def submit_many(self, requests: Sequence[dict[str, Any]], timeout: float | None = None
                          ) -> list[AsyncJobHandle | Exception]:
        """Submit many independent jobs in one round trip: a handle or the error of each request, in order."""
        deadline = self._deadline(timeout)
        items: list[Any] = []
        nets: list[Network | None] = []
        for kwargs in requests:
            try:
                net, prepared = submission(kwargs)
                await self.register(net, timeout=deadline.remaining())
                items.append(await self._request(prepared, deadline))
                nets.append(net)
            except Exception as exc:  # this item's own problem: reported in its place
                items.append(exc)
                nets.append(None)
        answers = await self._submit_items(items, deadline)
        lost = lost_networks(answers, nets)
        if lost:  # the server lost (or expired) networks this client had registered: register them again, once
            again: list[int] = []
            for positions in lost.values():
                net = nets[positions[0]]
                self._forget(net)
                try:
                    await self.register(net, timeout=deadline.remaining())
                    again += positions
                except Exception as exc:
                    for i in positions:
                        answers[i] = exc
            for i, answer in zip(again, await self._submit_items([items[i] for i in again], deadline)):
                answers[i] = answer
        return answers

    async def _submit_items(self, items: list[Any], deadline: Deadline) -> list[AsyncJobHandle | Exception]:
        """SubmitJobs for the requests among ``items`` (in calls that fit a message); answers in ``items``' order."""
        sent = [item for item in items if not isinstance(item, Exception)]
        replies = [await self._retrying(lambda left, call=call: self.stub.SubmitJobs(
            call, timeout=left, metadata=self._metadata), deadline)
            for call in submit_batches(sent, self._message_bytes())]
        handles = merge_submitted(self, items, replies, AsyncJobHandle)
        for handle in handles:
            if isinstance(handle, AsyncJobHandle):
                self.unwatched.add(handle)
        return handles

    async def _request(self, prepared: Prepared, deadline: Deadline) -> service_pb2.SubmitJobRequest:
        """The request with its batch inline, or referring to an upload of it."""
        if self._needs_limit(prepared.batch_bytes):
            self.server_max_message = int((await self.capabilities(timeout=deadline.remaining())).max_message_bytes)
        if self._sends_inline(prepared.batch_bytes):
            return prepared.inline()
        upload = await self._retrying(lambda left: self.stub.UploadBatch(
            prepared.pieces(self._piece_bytes()), timeout=left, metadata=self._metadata), deadline)
        return prepared.uploaded(upload.id)

    async def gradients(self, net: Network, inputs: Any, targets: Any = None, loss: str | None = None,
                        reduction: str = "mean", per_example: bool = False, dtype: str = "float64",
                        timeout: float | None = None, shard_rows: int | None = None,
                        norms: bool = False, clip_norm: float | None = None) -> GradientResult:
        """The same call and result as ``edgegrad.gradients``, computed by the service."""
        prepared = prepare(net, inputs, targets, loss, reduction, per_example, dtype, request_id=None,
                           shard_rows=shard_rows, norms=norms, clip_norm=clip_norm)
        deadline = self._deadline(timeout)

        async def run() -> GradientResult:
            request = await self._request(prepared, deadline)
            return await AsyncJobHandle(self, "", submit=request).result(deadline=deadline)

        return await self._with_network(net, deadline, run)

    async def _ack(self, name: str, seq: int, timeout: float | None = None) -> None:
        """Tell the service this client holds the job's chunks up to ``seq`` (it may drop them)."""
        await self._unary(self.stub.AckJob, service_pb2.AckJobRequest(name=name, seq=seq), timeout)

    def job(self, name: str, *, after_seq: int = 0, assemble: bool = True,
            acknowledge: bool = True) -> AsyncJobHandle:
        """A handle on an existing job by name; ``after_seq``, ``assemble``, ``acknowledge`` as in ``Client.job``."""
        return AsyncJobHandle(self, name, after_seq=after_seq, assemble=assemble, acknowledge=acknowledge)

    async def get_job(self, name: str, timeout: float | None = None) -> job_pb2.Job:
        """The current state of a job (NotFound if unknown or expired)."""
        return await self._unary(self.stub.GetJob, service_pb2.GetJobRequest(name=name), timeout)

    async def list_jobs(self, page_size: int = 100, timeout: float | None = None) -> AsyncIterator[job_pb2.Job]:
        """Every job the server keeps, page by page."""
        token = ""
        while True:
            page = await self._unary(self.stub.ListJobs, list_request(page_size, token),
                                     timeout)
            for job in page.jobs:
                yield job
            token = page.next_page_token
            if not token:
                return

    async def cancel_job(self, name: str, timeout: float | None = None) -> job_pb2.Job:
        """Ask the server to cancel a job."""
        return await self._unary(self.stub.CancelJob, service_pb2.CancelJobRequest(name=name), timeout)

    async def delete_job(self, name: str, timeout: float | None = None) -> None:
        """Delete a job and its result."""
        await self._unary(self.stub.DeleteJob, service_pb2.DeleteJobRequest(name=name), timeout)


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

    async def _chunks(self, deadline: Deadline) -> AsyncIterator[job_pb2.ResultChunk | RawChunk]:
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
                        if self.state.ack_due():  # workers wait for room in the job's result buffer
                            await self.client._ack(self.name, self.state.after_seq, timeout=deadline.remaining())
                            self.state.acked = self.state.after_seq
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
            pause = resume.pause(last_error)
            self.reconnects += 1
            await asyncio.sleep(pause)

    async def _grouped(self, deadline: Deadline) -> AsyncIterator[job_pb2.ResultChunk]:
        """Chunks from the WatchJobs stream this job shares with others (opened now if it is the first of them
        waited on); whatever the group cannot bring, ``chunks()`` then reads from the job's own stream."""
        if self.state.done or self._ahead is not None or self._submit is not None:
            return
        if self._group is None:
            open_async_group(self, self.client)
        group, self._group = self._group, None
        if group is None:
            return
        async for event in group.events(self.name, deadline):
            chunk = self.state.feed(event)
            if chunk is not None:
                yield chunk
                if self.state.ack_due():  # not for the small results a group takes; kept in step with chunks()
                    await self.client._ack(self.name, self.state.after_seq, timeout=deadline.remaining())
                    self.state.acked = self.state.after_seq
            if self.state.done:
                return

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

        try:
            self._ahead = await self.client._retrying(first, deadline)
        except BaseException:
            self.client.streams_ahead.give_back()
            raise

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

    def done(self) -> bool:
        """Whether the handle has seen the job end."""
        return self.state.done

    async def refresh(self, timeout: float | None = None) -> job_pb2.Job:
        """Fetch the job's current state with GetJob."""
        return await self.client.get_job(self.name, timeout=timeout)

    async def cancel(self, timeout: float | None = None) -> job_pb2.Job:
        """Ask the service to cancel the job."""
        return await self.client.cancel_job(self.name, timeout=timeout)

    async def delete(self, timeout: float | None = None) -> None:
        """Delete the job and its result on the service."""
        await self.client.delete_job(self.name, timeout=timeout)
