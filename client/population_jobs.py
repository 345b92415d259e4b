"""Population jobs from both clients: ``submit_population``, ``gradients_many``, ``outputs_many`` and their handles.

A population is one job (``client/population.py`` builds its request, and the upload of what does not fit one
message); its handle's ``results()``
yields ``(index, GradientResult)`` as each shard of networks completes, and ``result()`` the list.
``PopulationSubmission`` holds ``submit_population``'s steps between its calls, for both clients.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from typing import Any, TypeVar

import numpy as np

from edgegrad.engine.result import GradientResult
from edgegrad.errors import InvalidInput, NotFound
from edgegrad.status import job_error
from edgegrad.v1 import job_pb2, service_pb2

from .job import JobHandle
from .options import Deadline
from .population import PreparedPopulation, prepare_population
from .protocol import WatchState, network_lost

__all__ = ["PopulationJobHandle", "PopulationMethods", "PopulationSubmission", "end_of_results", "population_request",
           "refuse_too_large", "forget_lost", "INLINE_POPULATION_BYTES"]

H = TypeVar("H")

#: a population up to this size goes in one message (where it fits one); a larger one is uploaded in pieces,
#: which the server stores as they come (a large message costs the server several copies of it at once)
INLINE_POPULATION_BYTES = 16 << 20
#: what a request may take beyond its ``payload_bytes`` (an upper bound of its columns and rows: integers counted as
#: int64, sent as int32 where they fit), its fields' own tags and lengths: far less than this
SIZE_MARGIN = 64 << 10


def end_of_results(state: WatchState) -> None:
    """After the last network: raise a failed job's error (a cancelled job's results just stop)."""
    job = state.job
    if job is not None and job.state == job_pb2.JOB_STATE_FAILED:
        raise job_error(job)


class PopulationJobHandle(JobHandle):
    """A population job: ``results()`` yields ``(index, GradientResult)`` as they arrive, ``result()`` the list."""

    def results(self, timeout: float | None = None) -> Iterator[tuple[int, GradientResult]]:
        """Each network's result as its shard completes, in any order; stops after a cancel."""
        yield from self.state.take_ready()
        for _ in self._chunks(self.client._deadline(timeout)):
            yield from self.state.take_ready()
        yield from self.state.take_ready()
        end_of_results(self.state)

    def result(self, timeout: float | None = None, *,  # type: ignore[override]
               deadline: Deadline | None = None) -> list[GradientResult]:
        """Every network's GradientResult in ``nets`` order; Cancelled, JobFailed or the job's own error otherwise.
        Returns as soon as the last chunk arrives (the job's own end follows it)."""
        with closing(self._chunks(deadline or self.client._deadline(timeout))) as chunks:  # closed: its stream too
            for _ in chunks:
                if self.state.population_whole():
                    break
                self.state.build_whole()   # while the next chunks are on their way
        return self.state.population_results()


def population_request(nets: Any, inputs: Any, targets: Any, loss: str | None, reduction: str, per_example: bool,
                       dtype: str, norms: bool, clip_norm: float | None, outputs_only: bool,
                       shard_networks: int | None, request_id: str | None,
                       shard_rows: int | None = None) -> PreparedPopulation:
    """``submit_population``'s arguments, in its order, checked and prepared (``prepare_population``)."""
    return prepare_population(nets, inputs, targets, loss, reduction, per_example, dtype, norms, clip_norm,
                              outputs_only=outputs_only, shard_networks=shard_networks, request_id=request_id,
                              shard_rows=shard_rows)


def refuse_too_large(client: Any, request: service_pb2.SubmitJobRequest) -> None:
    """InvalidInput when the request passes the message limit even with its networks, values and rows uploaded."""
    size = request.ByteSize()
    if size > client._message_bytes():
        raise InvalidInput(f"nets: the population's request takes {size} bytes with its networks and rows uploaded,"
                           f" over the message limit of {client._message_bytes()}; send fewer networks per call")


def forget_lost(client: Any, referred: list[str]) -> None:
    """The service lost networks the request referred to: send them whole next time."""
    for digest in referred:
        client._forget(digest)
    client.topologies.drop(set(referred))


class PopulationSubmission:
    """``submit_population`` between its calls (either client's), free of I/O: the request to send, and
    what a refusal means.

    The request refers by hash to the topology the client sent before, if any; if the service lost it,
    ``refused`` forgets what the request referred to, so the next ``request()`` carries the networks
    inline: once. ``sent`` notes what the accepted request carried inline.
    """

    def __init__(self, client: Any, prepared: PreparedPopulation) -> None:
        self.client, self.prepared = client, prepared
        self.attempt = 0
        self._fits: service_pb2.SubmitJobRequest | None = None  #: the request ``inline()`` found within the limit
        self._referred: list[str] = []
        self._inline: list[str] = []

    def request(self, upload: str = "") -> service_pb2.SubmitJobRequest:
        """The request to send now (a topology this client knows the service has, by hash); ``upload``: the id of
        the upload of ``pieces()``, which then holds the networks' values, rows and (unless stored) topology."""
        self.attempt += 1
        request, self._referred, self._inline = self.prepared.request(self.client._is_known, self.client.topologies,
                                                                      upload=upload)
        return request

    @property
    def payload_bytes(self) -> int:
        """About the bytes of the request's networks and rows."""
        return self.prepared.payload_bytes(self.client.topologies) + self.prepared.base.ByteSize()

    def inline(self) -> service_pb2.SubmitJobRequest | None:
        """The request with everything in it, or None when it would not fit one message (then upload
        ``pieces()`` and send ``request(upload_id)``). Learn the server's limit first (``payload_bytes``)."""
        limit, payload = min(self.client._message_bytes(), INLINE_POPULATION_BYTES), self.payload_bytes
        if payload > limit:
            return None
        request = self.request()
        if payload + SIZE_MARGIN > limit and request.ByteSize() > limit:  # measured only near the limit
            self.attempt -= 1
            return None
        self._fits = request
        return request

    def pieces(self) -> Iterator[service_pb2.UploadPiece]:
        """What an uploaded request leaves out, in UploadPieces."""
        return self.prepared.pieces(self.client.topologies, self.client._piece_bytes())

    def check(self, request: service_pb2.SubmitJobRequest) -> service_pb2.SubmitJobRequest:
        """``request`` if it fits a message (the server's limit learned first where it matters). A request that
        ``inline()`` found within the limit is not measured again (measuring a megabyte request costs
        milliseconds: upb encodes it to count its bytes)."""
        if request is not self._fits:
            refuse_too_large(self.client, request)
        return request

    def refused(self, exc: NotFound) -> None:
        """After the send raised ``exc``: raise it, unless the service lost what the first request referred
        to (then forgotten, for a second request that carries it inline)."""
        if self.attempt >= 2 or not network_lost(exc):
            raise exc
        forget_lost(self.client, self._referred)

    def sent(self, handle: H) -> H:
        """The accepted job's ``handle``, once what its request carried inline is noted as stored."""
        self.prepared.remember(self._inline, self.client._remember, self.client.topologies)
        return handle


class PopulationMethods:
    """``Client``'s population calls."""

    def submit_population(self, nets: Any, inputs: Any, targets: Any = None, loss: str | None = None,
                          reduction: str = "mean", per_example: bool = False, dtype: str = "float64",
                          norms: bool = False, clip_norm: float | None = None, shard_networks: int | None = None,
                          request_id: str | None = None, timeout: float | None = None,
                          outputs_only: bool = False, shard_rows: int | None = None) -> PopulationJobHandle:
        """Enqueue ONE job computing ``gradients_many(nets, inputs, ...)``; its shards are groups of networks
        (``shard_networks`` each, else the service's choice) and, for large batches, of rows (``shard_rows`` each,
        else the service's choice). Networks not sent before travel inline."""
        client: Any = self  # the Client this is a part of
        steps = PopulationSubmission(client, population_request(nets, inputs, targets, loss, reduction, per_example,
                                                                dtype, norms, clip_norm, outputs_only, shard_networks,
                                                                request_id, shard_rows))
        deadline = client._deadline(timeout)
        while True:  # at most twice: refused() raises the second time
            client._learn_limit(steps.payload_bytes, deadline)
            request = steps.inline()
            if request is None:  # larger than one message: what does not fit goes in an upload first
                upload = client._retrying(lambda left: client.stub.UploadBatch(
                    steps.pieces(), timeout=left, metadata=client._metadata), deadline)
                request = steps.request(upload.id)
            try:
                handle = client._send(steps.check(request), deadline, PopulationJobHandle)
            except NotFound as exc:
                steps.refused(exc)
                continue
            return steps.sent(handle)

    def gradients_many(self, nets: Any, inputs: Any, targets: Any = None, loss: str | None = None,
                       reduction: str = "mean", per_example: bool = False, dtype: str = "float64",
                       norms: bool = False, clip_norm: float | None = None, shard_networks: int | None = None,
                       timeout: float | None = None, shard_rows: int | None = None) -> list[GradientResult]:
        """The same call and results as ``edgegrad.gradients_many``, computed by the service as one job."""
        job = self.submit_population(nets, inputs, targets, loss, reduction, per_example, dtype, norms, clip_norm,
                                     shard_networks, timeout=timeout, shard_rows=shard_rows)
        return job.result(timeout)

    def outputs_many(self, nets: Any, inputs: Any, dtype: str = "float64", shard_networks: int | None = None,
                     timeout: float | None = None, shard_rows: int | None = None) -> list[np.ndarray]:
        """The same as ``edgegrad.outputs_many`` (the forward pass only), computed by the service as one job."""
        job = self.submit_population(nets, inputs, dtype=dtype, shard_networks=shard_networks, timeout=timeout,
                                     outputs_only=True, shard_rows=shard_rows)
        return [r.outputs for r in job.result(timeout)]

    def population_job(self, name: str, *, after_seq: int = 0) -> PopulationJobHandle:
        """A handle on an existing population job by name (``results()`` needs ``after_seq=0``)."""
        client: Any = self  # the Client this is a part of
        return PopulationJobHandle(client, name, after_seq=after_seq)
