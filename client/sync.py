"""``edgegrad.Client``: the blocking client of the edgegrad service."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import grpc

from edgegrad.engine.result import GradientResult
from edgegrad.errors import DeadlineExceeded, NotFound
from edgegrad.model.network import Network
from edgegrad.v1 import job_pb2, service_pb2, service_pb2_grpc
from edgegrad.wire.codec import network_to_proto

from .base import ClientBase, EventStreams
from .deferral import may_defer
from .errors import from_rpc_error, is_retryable
from .job import JobHandle
from .options import DEFAULT_MAX_MESSAGE_BYTES, Backoff, Deadline
from .population_jobs import PopulationMethods
from .protocol import (
    Prepared,
    carrying_network,
    list_request,
    lost_networks,
    network_lost,
    prepare,
    submission,
    submit_batches,
    submitted_jobs,
    unavailable_positions,
)
from .submitter import PendingSubmit, Submitter

__all__ = ["Client"]

#: seconds ``close()`` waits for queued submissions without a client timeout
CLOSE_FLUSH_SECONDS = 30.0
#: a submit() this soon after the previous one returned is taken for a loop's: it may return before the answer
LOOP_GAP_SECONDS = 0.05

T = TypeVar("T")
H = TypeVar("H", bound=JobHandle)


class Client(ClientBase, PopulationMethods):
    """A connection to an edgegrad server; ``with edgegrad.Client("host:50051") as c: c.gradients(...)``.

    ``timeout`` is the default deadline (seconds) of each operation, retries included; ``tls`` or
    ``root_certificates`` (PEM bytes or a path) turn TLS on; ``token`` (default: ``EDGEGRAD_TOKEN``)
    is sent as ``authorization: Bearer <token>``. Calls that meet UNAVAILABLE are retried with
    exponential backoff and jitter; submissions carry a request id, so a retry never runs a job twice.
    ``interceptors`` (``grpc`` client interceptors) wrap the channel, e.g. for tracing.
    """

    def __init__(self, target: str, *, timeout: float | None = None, tls: bool | None = None,
                 root_certificates: bytes | str | None = None, token: str | None = None,
                 backoff: Backoff | None = None, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 interceptors: Sequence[Any] = (), pipelining: bool = True) -> None:
        super().__init__(target, timeout=timeout, tls=tls, root_certificates=root_certificates, token=token,
                         backoff=backoff, max_message_bytes=max_message_bytes)
        credentials = self.options.credentials()
        if credentials is None:
            self._channel = grpc.insecure_channel(self.options.target, options=self.options.channel_options())
        else:
            self._channel = grpc.secure_channel(self.options.target, credentials,
                                                options=self.options.channel_options())
        if interceptors:
            self._channel = grpc.intercept_channel(self._channel, *interceptors)
        self.stub = service_pb2_grpc.EdgegradStub(self._channel)
        self.streams = EventStreams(self._channel)  # watches: chunk data copied once, into the result
        #: whether ``submit()`` may return before the server's answer (``client/deferral.py`` says which may)
        self.pipelining = pipelining
        self._submitter = Submitter(self)
        self._capabilities: service_pb2.Capabilities | None = None
        self._last_submit = float("-inf")  #: when the last submit() returned (monotonic)

    # ------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Send what ``submit()`` has queued (within the client's timeout, 30 s without one), then close the
        channel; open job handles stop working."""
        self._submitter.close(self.timeout if self.timeout is not None else CLOSE_FLUSH_SECONDS)
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


    # ------------------------------------------------------------ plumbing
    def _retrying(self, call: Callable[[float | None], T], deadline: Deadline) -> T:
        """Run ``call(timeout)``, retrying UNAVAILABLE with backoff until it answers or the deadline passes."""
        delays = self.backoff.delays(deadline)
        while True:
            try:
                return call(deadline.remaining())
            except grpc.RpcError as exc:
                if not is_retryable(exc) or deadline.expired():
                    raise from_rpc_error(exc) from None
                delay = next(delays, None)
                if delay is None:
                    raise from_rpc_error(exc) from None
                time.sleep(deadline.clip(delay))

    def _unary(self, method: Callable[..., Any], request: Any, timeout: float | None) -> Any:
        """Call the stub's ``method`` with retries under the operation's deadline."""
        return self._unary_within(method, request, self._deadline(timeout))

    def _unary_within(self, method: Callable[..., Any], request: Any, deadline: Deadline) -> Any:
        """Call the stub's ``method`` with retries until ``deadline``."""
        return self._retrying(lambda left: method(request, timeout=left, metadata=self._metadata), deadline)

    # ------------------------------------------------------------ API
    def capabilities(self, timeout: float | None = None) -> service_pb2.Capabilities:
        """The server's limits, activations, losses and TTLs."""
        return self._unary(self.stub.GetCapabilities, service_pb2.GetCapabilitiesRequest(), timeout)

    def register(self, net: Network, timeout: float | None = None) -> str:
        """Make sure the server stores ``net`` (sent at most once per client); return its content hash."""
        digest = net.content_hash
        if self._is_known(digest):
            return digest
        try:
            self._unary(self.stub.GetNetwork, service_pb2.GetNetworkRequest(hash=digest), timeout)
        except NotFound:
            self._unary(self.stub.RegisterNetwork, service_pb2.RegisterNetworkRequest(network=network_to_proto(net)), timeout)
        self._remember(digest)
        return digest

    def submit(self, net: Network, inputs: Any, targets: Any = None, loss: str | None = None,
               reduction: str = "mean", per_example: bool = False, dtype: str = "float64",
               timeout: float | None = None, request_id: str | None = None,
               shard_rows: int | None = None,
               upload_progress: Callable[[int, int], None] | None = None,
               norms: bool = False, clip_norm: float | None = None) -> JobHandle:
        """Enqueue a job and return its handle at once (``wait()``, ``result()``, ``chunks()``, ``cancel()``).

        ``shard_rows`` sets the rows per shard (each shard may run on another worker); a batch
        larger than one message is uploaded in pieces first, each piece told to ``upload_progress``
        as ``(rows_sent, rows_in_all)`` (inputs' rows, then targets').
        """
        prepared = prepare(net, inputs, targets, loss, reduction, per_example, dtype, request_id=request_id,
                           shard_rows=shard_rows, norms=norms,
                           clip_norm=clip_norm)._replace(upload_progress=upload_progress)
        deadline = self._deadline(timeout)
        in_a_loop = time.monotonic() - self._last_submit < LOOP_GAP_SECONDS or self._submitter.holding()
        try:
            if (self.pipelining and in_a_loop and request_id is None
                    and may_defer(prepared, net, self._limits(deadline))):
                # answered with the next submissions' call (client/submitter.py): a loop pays no round trip per job
                handle = JobHandle(self, "")
                handle._pending = PendingSubmit()
                self._submitter.add(handle, net, prepared, deadline)
                return handle
            return self._with_network(net, deadline, lambda: self._send(self._request(prepared, deadline), deadline,
                                                                        JobHandle))
        finally:
            self._last_submit = time.monotonic()

    def flush(self, timeout: float | None = None) -> None:
        """Wait until the server has answered every submission ``submit()`` returned from before its answer
        (each handle then holds its job or its refusal); DeadlineExceeded if ``timeout`` passes first."""
        if not self._submitter.flush(self._deadline(timeout).remaining()):
            raise DeadlineExceeded("flush: the deadline passed before the server answered every submission")

    def _limits(self, deadline: Deadline) -> service_pb2.Capabilities:
        """The server's limits, asked once (what ``submit`` checks a deferred submission against)."""
        if self._capabilities is None:
            self._capabilities = self.capabilities(timeout=deadline.remaining())
        return self._capabilities

    def _send(self, request: service_pb2.SubmitJobRequest, deadline: Deadline, handle_type: type[H]) -> H:
        """Submit ``request``; its handle (of ``handle_type``) reads the Compute stream opened now, or later
        a WatchJobs stream it may share with the next jobs submitted without a stream."""
        if self.streams_ahead.try_take():
            # submit and watch in one call (Compute): wait() later reads the same stream, so a
            # loop of submit() then wait() pays one round trip per job, not two
            handle = handle_type(self, "", submit=request)
            handle._open_ahead(deadline)
            return handle
        job = self._unary_within(self.stub.SubmitJob, request, deadline)
        handle = handle_type(self, job.name)
        handle.state.update(job)
        self.unwatched.add(handle)  # its wait() may share one WatchJobs stream with the next ones
        return handle

    def submit_many(self, requests: Sequence[dict[str, Any]], timeout: float | None = None
                    ) -> list[JobHandle | Exception]:
        """Submit many independent jobs in one round trip: a handle or the error of each request, in order.

        Each request is a dict of ``submit``'s keyword arguments (``net``, ``inputs``, ``targets``,
        ``loss``, ...); one bad request never fails the others.
        """
        entries: list[tuple[Network, Prepared] | Exception] = []
        for kwargs in requests:
            try:
                entries.append(submission(kwargs))
            except Exception as exc:  # this item's own problem: reported in its place
                entries.append(exc)
        answers: list[Any] = self._submit_jobs(entries, self._deadline(timeout))
        for i, answer in enumerate(answers):
            if isinstance(answer, job_pb2.Job):
                handle = answers[i] = JobHandle(self, answer.name)
                handle.state.update(answer)
                self.unwatched.add(handle)
        return answers

    def _submit_jobs(self, entries: Sequence[tuple[Network, Prepared] | Exception], deadline: Deadline
                     ) -> list[job_pb2.Job | Exception]:
        """SubmitJobs for ``entries`` (an item's own error stays in its place): each one's job or refusal, in order.

        A network this client has not registered goes inline with its first item (registered with its
        job, no round trip of its own); networks the server lost are registered again, once.
        """
        items: list[Any] = []
        nets: list[Network | None] = []
        carried: set[str] = set()
        for entry in entries:
            if isinstance(entry, Exception):
                items.append(entry)
                nets.append(None)
                continue
            net, prepared = entry
            try:
                if not self._is_known(net.content_hash) and net.content_hash not in carried:
                    carried.add(net.content_hash)
                    prepared = carrying_network(prepared, net)
                items.append(self._request(prepared, deadline))
                nets.append(net)
            except Exception as exc:
                items.append(exc)
                nets.append(None)
        answers = self._submit_items(items, deadline)
        for sent, answer in zip(nets, answers):
            if sent is not None and not isinstance(answer, Exception):
                self._remember(sent.content_hash)
        lost = lost_networks(answers, nets)
        if lost:  # the server lost (or expired) networks this client had registered: register them again, once
            again: list[int] = []
            for net, positions in lost:
                self._forget(net)
                try:
                    self.register(net, timeout=deadline.remaining())
                    again += positions
                except Exception as exc:
                    for i in positions:
                        answers[i] = exc
            for i, answer in zip(again, self._submit_items([items[i] for i in again], deadline)):
                answers[i] = answer
        delays = self.backoff.delays(deadline)
        while (again := unavailable_positions(answers)) and not deadline.expired():  # an outage: send those again
            delay = next(delays, None)
            if delay is None:
                break
            time.sleep(deadline.clip(delay))
            for i, answer in zip(again, self._submit_items([items[i] for i in again], deadline)):
                answers[i] = answer
        return answers

    def _submit_items(self, items: list[Any], deadline: Deadline) -> list[job_pb2.Job | Exception]:
        """SubmitJobs for the requests among ``items`` (in calls that fit a message); answers in ``items``' order."""
        sent = [item for item in items if not isinstance(item, Exception)]
        replies = [self._unary_within(self.stub.SubmitJobs, call, deadline)
                   for call in submit_batches(sent, self._message_bytes())]
        return submitted_jobs(items, replies)

    def _learn_limit(self, nbytes: int, deadline: Deadline) -> None:
        """Ask the server for its message limit where sending ``nbytes`` depends on it."""
        if self._needs_limit(nbytes):
            self.server_max_message = int(self.capabilities(timeout=deadline.remaining()).max_message_bytes)

    def _request(self, prepared: Prepared, deadline: Deadline) -> service_pb2.SubmitJobRequest:
        """The request with its batch inline, or referring to an upload of it."""
        self._learn_limit(prepared.batch_bytes, deadline)
        if self._sends_inline(prepared.batch_bytes):
            return prepared.inline()
        upload = self._retrying(lambda left: self.stub.UploadBatch(
            prepared.pieces(self._piece_bytes()), timeout=left, metadata=self._metadata), deadline)
        return prepared.uploaded(upload.id)

    def gradients(self, net: Network, inputs: Any, targets: Any = None, loss: str | None = None,
                  reduction: str = "mean", per_example: bool = False, dtype: str = "float64",
                  timeout: float | None = None, shard_rows: int | None = None,
                  norms: bool = False, clip_norm: float | None = None) -> GradientResult:
        """The same call and result as ``edgegrad.gradients``, computed by the service (one Compute stream)."""
        prepared = prepare(net, inputs, targets, loss, reduction, per_example, dtype, request_id=None,
                           shard_rows=shard_rows, norms=norms, clip_norm=clip_norm)
        deadline = self._deadline(timeout)

        def run() -> GradientResult:
            handle = JobHandle(self, "", submit=self._request(prepared, deadline))
            return handle.result(deadline=deadline)

        return self._with_network(net, deadline, run)

    def _ack(self, name: str, seq: int, timeout: float | None = None) -> None:
        """Tell the service this client holds the job's chunks up to ``seq`` (it may drop them)."""
        self._unary(self.stub.AckJob, service_pb2.AckJobRequest(name=name, seq=seq), timeout)

    def _with_network(self, net: Network, deadline: Deadline, action: Callable[[], T]) -> T:
        """Register ``net`` if needed, run ``action``; if the server lost the network, register again once."""
        self.register(net, timeout=deadline.remaining())
        try:
            return action()
        except NotFound as exc:
            if not network_lost(exc):
                raise
            self._forget(net)
            self.register(net, timeout=deadline.remaining())
            return action()

    def job(self, name: str, *, after_seq: int = 0, assemble: bool = True, acknowledge: bool = True) -> JobHandle:
        """A handle on an existing job by name (``jobs/<id>``).

        ``after_seq``: its ``chunks()`` start after that seq (chunks the caller already has);
        ``assemble=False``: chunks pass through without being kept (no ``result()``; flat memory);
        ``acknowledge=False``: an onlooker that never frees chunks of a result larger than the
        service's buffer (its consumer does).
        """
        return JobHandle(self, name, after_seq=after_seq, assemble=assemble, acknowledge=acknowledge)

    def get_job(self, name: str, timeout: float | None = None) -> job_pb2.Job:
        """The current state of a job (NotFound if unknown or expired)."""
        return self._unary(self.stub.GetJob, service_pb2.GetJobRequest(name=name), timeout)

    def list_jobs(self, page_size: int = 100, timeout: float | None = None) -> Iterator[job_pb2.Job]:
        """Every job the server keeps, newest pages fetched as the iterator advances."""
        token = ""
        while True:
            page = self._unary(self.stub.ListJobs, list_request(page_size, token),
                               timeout)
            yield from page.jobs
            token = page.next_page_token
            if not token:
                return

    def cancel_job(self, name: str, timeout: float | None = None) -> job_pb2.Job:
        """Ask the server to cancel a job; returns its state after the request."""
        return self._unary(self.stub.CancelJob, service_pb2.CancelJobRequest(name=name), timeout)

    def delete_job(self, name: str, timeout: float | None = None) -> None:
        """Delete a job and its result (NotFound if unknown)."""
        self._unary(self.stub.DeleteJob, service_pb2.DeleteJobRequest(name=name), timeout)

