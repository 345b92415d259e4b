"""What the blocking and the asyncio clients share, apart from how they wait."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from edgegrad.errors import EdgegradError
from edgegrad.jobs.contract import state_name
from edgegrad.model.network import Network
from edgegrad.v1 import job_pb2, service_pb2
from edgegrad.wire.rawchunk import decode_event

from .grouping import Unwatched
from .options import Backoff, ConnectOptions, Deadline
from .population import Topologies
from .protocol import UINT64_MAX, Resume, WatchState, check_count
from .submitter import PendingSubmit

__all__ = ["ClientBase", "HandleBase", "state_name", "EventStreams"]

#: batches up to this size are sent inline without asking the server for its message limit
INLINE_WITHOUT_ASKING = 1 << 20
#: room left in a message for everything but the batch
MESSAGE_MARGIN = 64 << 10
#: batch bytes per piece of an upload
UPLOAD_PIECE_BYTES = 4 << 20


#: watch streams a client opens at submit time (beyond them a handle opens its stream on wait())
STREAMS_AHEAD = 64


class StreamBudget:
    """A count of streams opened ahead of being read, thread-safe."""

    def __init__(self, size: int) -> None:
        self._left = size
        self._lock = threading.RLock()  # re-entrant: a handle's finalizer may give one back mid-take

    def try_take(self) -> bool:
        """Take one if any is left."""
        with self._lock:
            if self._left <= 0:
                return False
            self._left -= 1
            return True

    def give_back(self) -> None:
        """Return one."""
        with self._lock:
            self._left += 1


class EventStreams:
    """Compute and WatchJob calls (sync or asyncio) whose chunk events arrive as RawChunks, their data a
    view of the received bytes (``edgegrad.wire.rawchunk``), and other events as JobEvents. The SDK
    reads its watches through these; ``Client.stub`` stays the plain generated stub."""

    def __init__(self, channel: Any) -> None:
        service = service_pb2.DESCRIPTOR.services_by_name["Edgegrad"].full_name
        self.Compute = channel.unary_stream(f"/{service}/Compute", response_deserializer=decode_event,
                                            request_serializer=service_pb2.SubmitJobRequest.SerializeToString)
        self.WatchJob = channel.unary_stream(f"/{service}/WatchJob", response_deserializer=decode_event,
                                             request_serializer=service_pb2.WatchJobRequest.SerializeToString)


class ClientBase:
    """Connection options, the default deadline, call metadata and the cache of registered networks."""

    def __init__(self, target: str, *, timeout: float | None, tls: bool | None,
                 root_certificates: bytes | str | None, token: str | None, backoff: Backoff | None,
                 max_message_bytes: int) -> None:
        self.options = ConnectOptions.build(target, tls=tls, root_certificates=root_certificates, token=token,
                                            max_message_bytes=max_message_bytes)
        self.timeout = Deadline(timeout).timeout  # checked now, not at the first call
        self.backoff = backoff or Backoff()
        self._known: set[str] = set()  #: content hashes this client knows the server stores
        self.server_max_message: int | None = None  #: the server's message limit, once asked
        self.streams_ahead = StreamBudget(STREAMS_AHEAD)  #: watch streams opened at submit, not yet read
        self.unwatched = Unwatched()  #: small jobs submitted without a stream, for a shared WatchJobs
        self._known_lock = threading.Lock()
        self.topologies = Topologies()  #: topologies registered through this client (population fine-tuning)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options.target!r})"

    def _deadline(self, timeout: float | None) -> Deadline:
        """The deadline of one operation: ``timeout`` or the client's default."""
        return Deadline(self.timeout if timeout is None else timeout)

    @property
    def _metadata(self) -> tuple[tuple[str, str], ...]:
        """Metadata sent with every call (the bearer token, if any)."""
        return self.options.metadata()

    def _needs_limit(self, batch_bytes: int) -> bool:
        """Whether the server's message limit must be known to send a batch of ``batch_bytes``."""
        return batch_bytes > INLINE_WITHOUT_ASKING and self.server_max_message is None

    def _sends_inline(self, batch_bytes: int) -> bool:
        """Whether a batch of ``batch_bytes`` fits in one SubmitJob message (else it is uploaded in pieces)."""
        if batch_bytes <= INLINE_WITHOUT_ASKING:
            return True
        return batch_bytes <= self._message_bytes()

    def _message_bytes(self) -> int:
        """Bytes one request may carry: the smaller of this client's and the server's (once known) limits."""
        limit = min(self.options.max_message_bytes, self.server_max_message or self.options.max_message_bytes)
        return max(1024, limit - MESSAGE_MARGIN)

    def _piece_bytes(self) -> int:
        """Bytes of batch per UploadPiece."""
        return max(1024, min(UPLOAD_PIECE_BYTES, self._message_bytes() // 2))

    def _is_known(self, digest: str) -> bool:
        """Whether ``digest`` was registered (or found) through this client."""
        with self._known_lock:
            return digest in self._known

    def _remember(self, digest: str) -> None:
        """Note that the server stores the network ``digest``."""
        with self._known_lock:
            self._known.add(digest)

    def _forget(self, net_or_hash: Network | str) -> None:
        """Drop a network from the registered-hash cache (it will be checked again next time)."""
        digest = net_or_hash.content_hash if isinstance(net_or_hash, Network) else net_or_hash
        with self._known_lock:
            self._known.discard(digest)


class HandleBase:
    """A job's name, latest state and stream position, and how to (re)open its stream."""

    def __init__(self, client: Any, name: str, *, submit: service_pb2.SubmitJobRequest | None = None,
                 after_seq: int = 0, assemble: bool = True, acknowledge: bool = True) -> None:
        self.client = client
        after_seq = check_count("after_seq", after_seq, 0, UINT64_MAX, "the seq of a chunk already held")
        self.state = WatchState(name, after_seq=after_seq, assemble=assemble, acknowledge=acknowledge)
        self._submit = submit  # a Compute request still to send (gradients()), or None
        self._call: Any = None
        self._ahead: Any = None  # a stream opened at submit (with its first events read), until chunks() takes it
        self._group: Any = None  # a WatchJobs stream this job's events come in (client/group.py), until read
        self.reconnects = 0  #: how many times the stream was resumed after a drop
        self._pending: PendingSubmit | None = None  # a submission the client sends later (client/submitter.py)

    @property
    def name(self) -> str:
        """The job's name, ``jobs/<id>`` ("" until a Compute stream has answered); waits for a deferred
        submission's answer, and raises its refusal."""
        self._settle()
        return self.state.name

    def _settle(self, deadline: Deadline | None = None) -> None:
        """Wait until the server has answered this handle's deferred submission; raise its refusal, if any."""
        pending = self._pending
        if pending is not None:
            pending.wait(deadline)
            self._pending = None

    def _pending_settle(self, error: BaseException | None, only_unsettled: bool = False) -> None:
        """The sender's answer to this handle's deferred submission (``error``: its refusal)."""
        pending = self._pending
        if pending is not None and not (only_unsettled and pending.answered):
            pending.settle(error)

    @property
    def job(self) -> job_pb2.Job | None:
        """The latest state seen (no call made; a deferred submission's answer is waited for)."""
        self._settle()
        return self.state.job

    @property
    def state_name(self) -> str:
        """The latest state seen as a name (``queued``, ``running``, ``succeeded``, ...; ``unknown`` before any)."""
        return state_name(self.job.state) if self.job is not None else "unknown"

    def __repr__(self) -> str:
        try:
            self._settle()  # a deferred submission's answer, as ``name`` waits for it
        except Exception:
            return f"{type(self).__name__}({self.state.name!r}, state='refused')"
        return f"{type(self).__name__}({self.state.name!r}, state={self.state_name!r})"

    def _release_ahead(self, cancel: bool) -> Any:
        """Stop holding the stream opened at submit; return it, or cancel it and return None."""
        call, self._ahead = self._ahead, None
        if call is None:
            return None
        self.client.streams_ahead.give_back()
        if cancel:
            call.cancel()
            return None
        return call

    def __del__(self) -> None:
        try:
            self._release_ahead(cancel=True)
        except Exception:  # interpreter shutdown: nothing left to release
            pass

    def done(self) -> bool:
        """Whether the handle has seen the job end."""
        return self.state.done

    # ---------------------------------------------- steps both handles take, free of I/O
    def _may_read_a_group(self) -> bool:
        """Whether this job's events may come from a WatchJobs group: it is not done and has no stream of its own."""
        return not (self.state.done or self._ahead is not None or self._submit is not None)

    def _group_to_read(self, open_group: Callable[[Any, Any], None]) -> Any:
        """The WatchJobs group to read this job's events from first, taken (``open_group`` opens one when
        this is the first of its jobs waited on), or None: the job is done, or has a stream of its own."""
        if not self._may_read_a_group():
            return None
        if self._group is None:
            open_group(self, self.client)
        group, self._group = self._group, None
        return group

    def _ack_seq(self) -> int | None:
        """The seq to acknowledge after a chunk, when due (``WatchState.ack_due``: workers wait for room in
        the job's result buffer); the caller sends it, then sets ``state.acked``."""
        return self.state.after_seq if self.state.ack_due() else None

    def _resuming(self, resume: Resume, last_error: EdgegradError) -> float:
        """Seconds to wait before the stream is opened again after ``last_error`` (``Resume.pause``: raises it
        when no try or time is left), counted in ``reconnects``."""
        pause = resume.pause(last_error)
        self.reconnects += 1
        return pause

    @contextmanager
    def _giving_back_stream_ahead(self) -> Iterator[None]:
        """Around opening the stream ahead: on failure, give back the stream it was counted against."""
        try:
            yield
        except BaseException:
            self.client.streams_ahead.give_back()
            raise

    def _open(self, deadline: Deadline) -> Any:
        """A new stream: Compute for a not yet submitted job, WatchJob from the last seq otherwise."""
        if self._ahead is not None:
            return self._release_ahead(cancel=False)
        stub, metadata = self.client.streams, self.client._metadata
        if not self.state.name and self._submit is not None:
            return stub.Compute(self._submit, timeout=deadline.remaining(), metadata=metadata)
        request = service_pb2.WatchJobRequest(name=self.state.name, after_seq=self.state.after_seq)
        return stub.WatchJob(request, timeout=deadline.remaining(), metadata=metadata)
