"""The client's side of the job protocol, free of I/O: requests out, events in, a result at the end.

The sync and async clients share everything here and differ only in how they wait.
"""

from __future__ import annotations

import uuid
from typing import Any

from edgegrad.batch import check_options
from edgegrad.codec import ResultAssembler, network_to_proto, tensor_from_array
from edgegrad.errors import FailedPrecondition
from edgegrad.network import Network
from edgegrad.result import GradientResult
from edgegrad.v1 import job_pb2, service_pb2

from .errors import job_error

__all__ = ["build_request", "new_request_id", "WatchState", "TERMINAL_STATES"]

TERMINAL_STATES = frozenset({job_pb2.JOB_STATE_SUCCEEDED, job_pb2.JOB_STATE_FAILED, job_pb2.JOB_STATE_CANCELLED})


def new_request_id() -> str:
    """A fresh client-side id that makes a submission idempotent across retries."""
    return uuid.uuid4().hex


def build_request(net: Network, inputs: Any, targets: Any, loss: str | None, reduction: str,
                  per_example: bool, dtype: str, *, request_id: str | None,
                  inline: bool = False) -> service_pb2.SubmitJobRequest:
    """A validated SubmitJobRequest referring to ``net`` by hash (or carrying it inline)."""
    if not isinstance(net, Network):
        raise TypeError(f"net must be an edgegrad.Network, got {type(net).__name__}")
    x, t = check_options(net, inputs, targets, loss, reduction, dtype, per_example)
    request = job_pb2.GradientRequest(
        inputs=tensor_from_array(x), loss=loss or "", reduction=reduction, per_example=bool(per_example),
        dtype=str(dtype))
    if t is not None:
        request.targets.CopyFrom(tensor_from_array(t))
    if inline:
        request.network_inline.CopyFrom(network_to_proto(net))
    else:
        request.network_hash = net.content_hash
    return service_pb2.SubmitJobRequest(request=request, request_id=request_id or new_request_id())


class WatchState:
    """What a watcher has seen of one job: its latest state, the last chunk seq, the chunks so far.

    ``after_seq`` starts the watch after chunks the caller already has; ``assemble=False`` passes
    chunks through without keeping them (memory stays flat however large the result).
    """

    def __init__(self, name: str = "", *, after_seq: int = 0, assemble: bool = True) -> None:
        self.name = name
        self.job: job_pb2.Job | None = None
        self.after_seq = int(after_seq)
        self.assemble = assemble
        self.done = False
        self._assembler: ResultAssembler | None = None

    def feed(self, event: job_pb2.JobEvent) -> job_pb2.ResultChunk | None:
        """Take one stream event; return it if it is a chunk not seen before."""
        kind = event.WhichOneof("event")
        if kind == "chunk":
            chunk = event.chunk
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

    def _assembler_for(self) -> ResultAssembler:
        if self._assembler is None:
            if self.job is None or not self.job.HasField("layout"):
                raise FailedPrecondition(f"{self.name}: a chunk arrived before the result layout")
            self._assembler = ResultAssembler(self.job.layout)
        return self._assembler

    def result(self) -> GradientResult:
        """The assembled result of a finished job, or the job's error."""
        job = self.job
        if job is None or job.state not in TERMINAL_STATES:
            raise FailedPrecondition(f"{self.name}: the job has not finished")
        if job.state != job_pb2.JOB_STATE_SUCCEEDED:
            raise job_error(job)
        if not self.assemble:
            raise FailedPrecondition(f"{self.name}: this handle passes chunks through without keeping them"
                                     " (assemble=False); read them with chunks()")
        assembler = self._assembler_for()
        if not assembler.complete:
            raise FailedPrecondition(f"{self.name}: finished with {self.after_seq} of "
                                     f"{job.layout.chunk_count} chunks received")
        return assembler.result(job.loss if job.HasField("loss") else None)

