"""The client's side of the job protocol, free of I/O: requests out, events in, a result at the end.

The sync and async clients share everything here and differ only in how they wait.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np

from edgegrad.engine.batch import check_options
from edgegrad.engine.clipping import check_clipping
from edgegrad.engine.result import GradientResult
from edgegrad.errors import EdgegradError, FailedPrecondition, InvalidInput, NotFound, Unavailable
from edgegrad.model.network import Network
from edgegrad.status import from_status, job_error
from edgegrad.v1 import job_pb2, service_pb2
from edgegrad.wire.chunking import ResultAssembler, buffered_chunk_limit
from edgegrad.wire.codec import network_to_proto, tensor_from_array
from edgegrad.wire.population import PopulationAssembler
from edgegrad.wire.rawchunk import RawChunk

from .options import Backoff, Deadline

__all__ = ["prepare", "check_count", "list_request", "UINT32_MAX", "UINT64_MAX", "Prepared",
           "new_request_id", "WatchState", "TERMINAL_STATES",
           "submission", "submit_batches", "submitted_jobs", "merge_submitted", "Resume", "network_lost", "unavailable_positions"]

TERMINAL_STATES = frozenset({job_pb2.JOB_STATE_SUCCEEDED, job_pb2.JOB_STATE_FAILED, job_pb2.JOB_STATE_CANCELLED})


def new_request_id() -> str:
    """A fresh client-side id that makes a submission idempotent across retries."""
    return uuid.uuid4().hex


class Prepared(NamedTuple):
    """A checked submission: the request without its batch, and the batch (inline or to upload)."""

    request: service_pb2.SubmitJobRequest
    inputs: np.ndarray
    targets: np.ndarray | None
    #: told ``(rows_sent, rows_in_all)`` as each upload piece goes (inputs' rows, then targets')
    upload_progress: Callable[[int, int], None] | None = None

    @property
    def batch_bytes(self) -> int:
        """Bytes of the batch on the wire."""
        return self.inputs.nbytes + (0 if self.targets is None else self.targets.nbytes)

    def inline(self) -> service_pb2.SubmitJobRequest:
        """The request carrying its batch."""
        request = service_pb2.SubmitJobRequest()
        request.CopyFrom(self.request)
        request.request.inputs.CopyFrom(tensor_from_array(self.inputs))
        if self.targets is not None:
            request.request.targets.CopyFrom(tensor_from_array(self.targets))
        return request

    def uploaded(self, upload_id: str) -> service_pb2.SubmitJobRequest:
        """The request referring to an upload of its batch."""
        request = service_pb2.SubmitJobRequest()
        request.CopyFrom(self.request)
        request.request.upload = upload_id
        return request

    def pieces(self, piece_bytes: int) -> Iterator[service_pb2.UploadPiece]:
        """The batch as UploadPieces of about ``piece_bytes`` each (inputs, then targets, same rows a piece)."""
        widths = [self.inputs.shape[1]] + ([] if self.targets is None else [self.targets.shape[1]])
        rows = max(1, piece_bytes // (8 * max(1, max(widths))))
        total = self.inputs.shape[0] * len(widths)
        sent = 0
        for name, values in (("inputs", self.inputs), ("targets", self.targets)):
            if values is None:
                continue
            for a in range(0, values.shape[0], rows):
                yield service_pb2.UploadPiece(field=name, rows=tensor_from_array(values[a:a + rows]))
                sent += min(rows, values.shape[0] - a)
                if self.upload_progress is not None:
                    self.upload_progress(sent, total)


#: the largest values of the wire's unsigned fields: a number beyond them is bad input, never a protobuf ValueError
UINT32_MAX = 2 ** 32 - 1
UINT64_MAX = 2 ** 64 - 1


def check_count(name: str, value: Any, low: int, high: int, what: str) -> int:
    """``value`` as an int if it is a whole number in ``low..high``; InvalidInput naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise InvalidInput(f"{name}: expected {what} ({low}..{high}), got {value!r}")
    return int(value)


def list_request(page_size: Any, page_token: str) -> service_pb2.ListJobsRequest:
    """One ListJobs page request, its ``page_size`` checked (0 is the server's default)."""
    return service_pb2.ListJobsRequest(page_size=check_count("page_size", page_size, 0, UINT32_MAX, "jobs a page"),
                                       page_token=page_token)


def prepare(net: Network, inputs: Any, targets: Any, loss: str | None, reduction: str, per_example: bool,
            dtype: str, *, request_id: str | None, inline: bool = False, shard_rows: int | None = None,
            norms: bool = False, clip_norm: float | None = None) -> Prepared:
    """Check a submission like the in-process call does; the request refers to ``net`` by hash (or carries it)."""
    if not isinstance(net, Network):
        raise TypeError(f"net must be an edgegrad.Network, got {type(net).__name__}")
    if shard_rows is not None:
        check_count("shard_rows", shard_rows, 1, UINT64_MAX, "a positive number of rows")
    x, t = check_options(net, inputs, targets, loss, reduction, dtype, per_example)
    clip = check_clipping(loss, norms, clip_norm)
    request = job_pb2.GradientRequest(loss=loss or "", reduction=reduction, per_example=bool(per_example),
                                      dtype=str(dtype), norms=bool(norms) or clip is not None, clip_norm=clip or 0.0)
    if inline:
        request.network_inline.CopyFrom(network_to_proto(net))
    else:
        request.network_hash = net.content_hash
    submit = service_pb2.SubmitJobRequest(request=request, request_id=request_id or new_request_id(),
                                          shard_rows=int(shard_rows or 0))
    return Prepared(submit, x, t)


#: the keyword arguments a ``submit_many`` request may carry (those of ``submit``)
SUBMIT_ARGUMENTS = ("net", "inputs", "targets", "loss", "reduction", "per_example", "dtype", "request_id",
                    "shard_rows", "norms", "clip_norm")


def carrying_network(prepared: Prepared, net: Network) -> Prepared:
    """``prepared`` with its network inline instead of by hash: the submission registers it, no round trip of its own."""
    request = service_pb2.SubmitJobRequest()
    request.CopyFrom(prepared.request)
    request.request.network_inline.CopyFrom(network_to_proto(net))
    return prepared._replace(request=request)


def submission(kwargs: dict[str, Any]) -> tuple[Network, Prepared]:
    """The network and prepared request of one ``submit_many`` item (a dict of ``submit``'s arguments)."""
    if not isinstance(kwargs, dict):
        raise InvalidInput(f"request: expected a dict of submit's arguments, got {type(kwargs).__name__}")
    unknown = sorted(set(kwargs) - set(SUBMIT_ARGUMENTS))
    if unknown:
        raise InvalidInput(f"request: unknown argument {unknown[0]!r} (expected {', '.join(SUBMIT_ARGUMENTS)})")
    if "net" not in kwargs or "inputs" not in kwargs:
        raise InvalidInput("request: needs 'net' and 'inputs'")
    options = {"targets": None, "loss": None, "reduction": "mean", "per_example": False, "dtype": "float64",
               "request_id": None, "shard_rows": None, "norms": False, "clip_norm": None, **kwargs}
    prepared = prepare(options["net"], options["inputs"], options["targets"], options["loss"], options["reduction"],
                       options["per_example"], options["dtype"], request_id=options["request_id"],
                       shard_rows=options["shard_rows"], norms=options["norms"], clip_norm=options["clip_norm"])
    return options["net"], prepared


#: most requests in one SubmitJobs call
SUBMIT_MANY_BATCH = 1000


def submit_batches(requests: list[service_pb2.SubmitJobRequest], max_bytes: int) -> Iterator[service_pb2.SubmitJobsRequest]:
    """SubmitJobs calls carrying ``requests`` in order, each within ``max_bytes`` and SUBMIT_MANY_BATCH items."""
    batch: list[service_pb2.SubmitJobRequest] = []
    size = 0
    for request in requests:
        item = request.ByteSize() + 16
        if batch and (size + item > max_bytes or len(batch) >= SUBMIT_MANY_BATCH):
            yield service_pb2.SubmitJobsRequest(requests=batch)
            batch, size = [], 0
        batch.append(request)
        size += item
    if batch:
        yield service_pb2.SubmitJobsRequest(requests=batch)


def submitted_jobs(items: list[Any], replies: list[service_pb2.SubmitJobsResponse]) -> list[Any]:
    """Each item's job (``job_pb2.Job``) or error, in request order: the items' own errors stay in place,
    the others take the replies' results in turn."""
    results = iter([r for reply in replies for r in reply.results])
    out: list[Any] = []
    for item in items:
        if isinstance(item, Exception):
            out.append(item)
            continue
        result = next(results)
        out.append(result.job if result.WhichOneof("result") == "job" else from_status(result.error, "INTERNAL"))
    return out


def merge_submitted(client: Any, items: list[Any], replies: list[service_pb2.SubmitJobsResponse],
                    handle_type: type) -> list[Any]:
    """``submit_many``'s answer: each item's handle (``handle_type``) or its error, in request order."""
    out: list[Any] = []
    for answer in submitted_jobs(items, replies):
        if isinstance(answer, job_pb2.Job):
            handle = handle_type(client, answer.name)
            handle.state.update(answer)
            answer = handle
        out.append(answer)
    return out


class WatchState:
    """What a watcher has seen of one job: its latest state, the last chunk seq, the chunks so far.

    ``after_seq`` starts the watch after chunks the caller already has; ``assemble=False`` passes
    chunks through without keeping them (memory stays flat however large the result);
    ``acknowledge=False`` makes an onlooker that never frees chunks for the workers.
    """

    def __init__(self, name: str = "", *, after_seq: int = 0, assemble: bool = True, acknowledge: bool = True) -> None:
        self.name = name
        self.job: job_pb2.Job | None = None
        self.after_seq = int(after_seq)
        self.acked = 0  #: the last seq this watcher acknowledged (the service may drop chunks up to there)
        self.assemble = assemble
        self.acknowledge = acknowledge  #: whether this watcher frees the chunks it read (the job's consumer)
        self.done = False
        self._assembler: ResultAssembler | PopulationAssembler | None = None

    def feed(self, event: job_pb2.JobEvent | RawChunk) -> job_pb2.ResultChunk | RawChunk | None:
        """Take one stream event (a RawChunk: a chunk event as ``decode_event`` read it); return it if
        it is a chunk not seen before."""
        kind = "chunk" if isinstance(event, RawChunk) else event.WhichOneof("event")
        if kind == "chunk":
            chunk = event if isinstance(event, RawChunk) else event.chunk
            if chunk.seq <= self.after_seq:
                return None  # a duplicate after a reconnect: already have it
            if chunk.seq != self.after_seq + 1:
                raise FailedPrecondition(f"{self.name}: chunk seq {chunk.seq} after {self.after_seq} (a gap)")
            if self.assemble:
                self._assembler_for().add(chunk)
            self.after_seq = chunk.seq
            return chunk
        if kind in ("state", "done"):
            self.update(getattr(event, kind))
            self.done = self.done or kind == "done"
        return None

    def update(self, job: job_pb2.Job) -> None:
        """Record a newer view of the job (from the stream, SubmitJob or GetJob)."""
        self.job = job
        self.name = job.name or self.name
        if job.state in TERMINAL_STATES and job.state != job_pb2.JOB_STATE_SUCCEEDED:
            self.done = True

    def ack_due(self) -> bool:
        """Whether to acknowledge the chunks so far: the result is larger than the service's buffer
        (workers wait for room) and enough chunks arrived since the last acknowledgement.

        A result that fits the buffer is never acknowledged, so it stays whole for its TTL and any
        later watch can read it again; a larger one is read once.
        """
        if not self.acknowledge or self.job is None:
            return False
        limit = buffered_chunk_limit(self.job.layout)
        return bool(limit) and self.job.layout.chunk_count > limit and self.after_seq - self.acked >= max(1, limit // 2)

    def _assembler_for(self) -> ResultAssembler | PopulationAssembler:
        if self._assembler is None:
            if self.job is None or not self.job.HasField("layout"):
                raise FailedPrecondition(f"{self.name}: a chunk arrived before the result layout")
            layout = self.job.layout
            self._assembler = PopulationAssembler(layout) if layout.HasField("population") else ResultAssembler(layout)
        return self._assembler

    def _population(self) -> PopulationAssembler:
        assembler = self._assembler_for()
        if not isinstance(assembler, PopulationAssembler):
            raise FailedPrecondition(f"{self.name}: not a population job")
        return assembler

    def take_ready(self) -> list[tuple[int, GradientResult]]:
        """A population job's networks whose results became whole since the last call: (index, result)."""
        if self._assembler is None and (self.job is None or not self.job.HasField("layout") or not self.assemble):
            return []
        assembler = self._population()
        ready = assembler.take_ready()
        return list(zip(ready, assembler.built(ready)))

    def build_whole(self) -> None:
        """A population job's results of the shards whose chunks all arrived, built now (``population_results``
        then has only the rest to build)."""
        if isinstance(self._assembler, PopulationAssembler):
            self._assembler.build_whole()

    def population_whole(self) -> bool:
        """Whether every chunk of a population job's result has arrived (its results are whole, whatever the job's
        state says yet: the worker's last shard ends the job after writing them)."""
        return self._assembler is not None and self.assemble and self._assembler.complete

    def population_results(self) -> list[GradientResult]:
        """Every network's result of a population job whose chunks all arrived, or of a finished one, in order; or
        the job's error."""
        if self.population_whole():
            return self._population().results()
        job = self._finished()
        assembler = self._population()
        if not assembler.complete:
            raise FailedPrecondition(f"{self.name}: finished with {self.after_seq} of "
                                     f"{job.layout.chunk_count} chunks received")
        return assembler.results()

    def _finished(self) -> job_pb2.Job:
        """The job, finished successfully with its chunks kept; its error otherwise."""
        job = self.job
        if job is None or job.state not in TERMINAL_STATES:
            raise FailedPrecondition(f"{self.name}: the job has not finished")
        if job.state != job_pb2.JOB_STATE_SUCCEEDED:
            raise job_error(job)
        if not self.assemble:
            raise FailedPrecondition(f"{self.name}: this handle passes chunks through without keeping them"
                                     " (assemble=False); read them with chunks()")
        return job

    def result(self) -> GradientResult:
        """The assembled result of a finished job, or the job's error."""
        job = self._finished()
        assembler = self._assembler_for()
        if isinstance(assembler, PopulationAssembler):
            raise FailedPrecondition(f"{self.name}: a population job: its results are a list (population_results)")
        if not assembler.complete:
            raise FailedPrecondition(f"{self.name}: finished with {self.after_seq} of "
                                     f"{job.layout.chunk_count} chunks received")
        return assembler.result(job.loss if job.HasField("loss") else None)



class Resume:
    """The reconnect decisions of a watch, for both clients: which failures end it, and the pause
    before the stream is opened again (backoff that starts afresh whenever the stream made progress).
    """

    def __init__(self, state: WatchState, backoff: Backoff, deadline: Deadline) -> None:
        self.state, self.backoff, self.deadline = state, backoff, deadline
        self._delays = backoff.delays(deadline)
        self._seen: tuple[int, job_pb2.Job | None] | None = None

    def opened(self) -> None:
        """A stream was (re)opened: note where it starts."""
        self._seen = self.state.after_seq, self.state.job

    def failed(self, error: EdgegradError, dropped: bool) -> EdgegradError:
        """The stream failed with ``error``: raise it unless the connection was ``dropped`` and time is
        left; return it as the error to give up with later."""
        if not dropped or self.deadline.expired():
            raise error from None
        return error

    def ended(self) -> EdgegradError:
        """The stream ended before the job did: the error to give up with later."""
        return Unavailable(f"{self.state.name}: the watch stream ended before the job finished")

    def pause(self, last_error: EdgegradError) -> float:
        """Seconds to wait before reopening; raises ``last_error`` when no try or time is left."""
        if (self.state.after_seq, self.state.job) != self._seen:
            self._delays = self.backoff.delays(self.deadline)  # progress was made: start backing off afresh
        delay = next(self._delays, None)
        if delay is None or self.deadline.expired():
            raise last_error
        return self.deadline.clip(delay)


def lost_networks(answers: list[Any], nets: list[Network | None]) -> list[tuple[Network, list[int]]]:
    """``submit_many``'s items refused because the server lost their network: each such network, with
    the positions of its items."""
    lost: dict[str, tuple[Network, list[int]]] = {}
    for i, (answer, net) in enumerate(zip(answers, nets)):
        if isinstance(answer, NotFound) and network_lost(answer) and net is not None:
            lost.setdefault(net.content_hash, (net, []))[1].append(i)
    return list(lost.values())


def unavailable_positions(answers: list[Any]) -> list[int]:
    """Where ``submit_many``'s items were refused for a passing outage (UNAVAILABLE, e.g. Redis down): the
    items to send again after a pause (their request ids make it safe)."""
    return [i for i, answer in enumerate(answers) if isinstance(answer, Unavailable)]


def network_lost(exc: NotFound) -> bool:
    """Whether a NotFound says the server no longer has the network (or a population's topology) a request
    referred to by hash (the field the server sets), so sending it again and retrying once may succeed."""
    return exc.field in ("network_hash", "networks_hash")
