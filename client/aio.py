"""``edgegrad.AsyncClient`` and its job handle: the asyncio (grpc.aio) client of the edgegrad service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
import grpc.aio

from edgegrad.engine.result import GradientResult
from edgegrad.errors import NotFound
from edgegrad.model.network import Network
from edgegrad.v1 import job_pb2, service_pb2, service_pb2_grpc
from edgegrad.wire.codec import network_to_proto

from .aiogroup import AsyncWatchGroup
from .aiojob import AsyncJobHandle
from .aiopopulation import AsyncPopulationMethods
from .base import ClientBase, EventStreams
from .errors import from_rpc_error, is_retryable
from .options import DEFAULT_MAX_MESSAGE_BYTES, Backoff, Deadline
from .protocol import (
    Prepared,
    carrying_network,
    list_request,
    lost_networks,
    merge_submitted,
    network_lost,
    prepare,
    submission,
    submit_batches,
    unavailable_positions,
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
                 interceptors: Sequence[Any] = (), pipelining: bool = True) -> None:
        super().__init__(target, timeout=timeout, tls=tls, root_certificates=root_certificates, token=token,
                         backoff=backoff, max_message_bytes=max_message_bytes)
        #: ``Client``'s switch, kept for code that runs on both: ``await submit()`` always has the server's
        #: answer when it returns (submissions overlap with ``asyncio.gather`` instead)
        self.pipelining = pipelining
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
    async def flush(self, timeout: float | None = None) -> None:
        """``Client.flush``'s twin: every ``await submit()`` already has its answer, so nothing is left to wait for."""
        self._deadline(timeout)  # the argument checked as Client checks it

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
        return await self._unary_within(method, request, self._deadline(timeout))

    async def _unary_within(self, method: Callable[..., Any], request: Any, deadline: Deadline) -> Any:
        """Await the stub's ``method`` with retries until ``deadline``."""
        return await self._retrying(lambda left: method(request, timeout=left, metadata=self._metadata), deadline)

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
        job = await self._unary_within(self.stub.SubmitJob, request, deadline)
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
        carried: set[str] = set()
        for kwargs in requests:
            try:
                net, prepared = submission(kwargs)
                if not self._is_known(net.content_hash) and net.content_hash not in carried:
                    carried.add(net.content_hash)  # inline once: registered with its job, no round trip
                    prepared = carrying_network(prepared, net)
                items.append(await self._request(prepared, deadline))
                nets.append(net)
            except Exception as exc:  # this item's own problem: reported in its place
                items.append(exc)
                nets.append(None)
        answers = await self._submit_items(items, deadline)
        for sent, answer in zip(nets, answers):
            if sent is not None and not isinstance(answer, Exception):
                self._remember(sent.content_hash)
        lost = lost_networks(answers, nets)
        if lost:  # the server lost (or expired) networks this client had registered: register them again, once
            again: list[int] = []
            for net, positions in lost:
                self._forget(net)
                try:
                    await self.register(net, timeout=deadline.remaining())
                    again += positions
                except Exception as exc:
                    for i in positions:
                        answers[i] = exc
            for i, answer in zip(again, await self._submit_items([items[i] for i in again], deadline)):
                answers[i] = answer
        delays = self.backoff.delays(deadline)
        while (again := unavailable_positions(answers)) and not deadline.expired():  # an outage: send those again
            delay = next(delays, None)
            if delay is None:
                break
            await asyncio.sleep(deadline.clip(delay))
            for i, answer in zip(again, await self._submit_items([items[i] for i in again], deadline)):
                answers[i] = answer
        return answers

    async def _submit_items(self, items: list[Any], deadline: Deadline) -> list[AsyncJobHandle | Exception]:
        """SubmitJobs for the requests among ``items`` (in calls that fit a message); answers in ``items``' order."""
        sent = [item for item in items if not isinstance(item, Exception)]
        replies = [await self._unary_within(self.stub.SubmitJobs, call, deadline)
                   for call in submit_batches(sent, self._message_bytes())]
        handles = merge_submitted(self, items, replies, AsyncJobHandle)
        for handle in handles:
            if isinstance(handle, AsyncJobHandle):
                self.unwatched.add(handle)
        return handles

    async def _learn_limit(self, nbytes: int, deadline: Deadline) -> None:
        """Ask the server for its message limit where sending ``nbytes`` depends on it."""
        if self._needs_limit(nbytes):
            self.server_max_message = int((await self.capabilities(timeout=deadline.remaining())).max_message_bytes)

    async def _request(self, prepared: Prepared, deadline: Deadline) -> service_pb2.SubmitJobRequest:
        """The request with its batch inline, or referring to an upload of it."""
        await self._learn_limit(prepared.batch_bytes, deadline)
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
