"""Population jobs from both clients: ``submit_population``, ``gradients_many``, ``outputs_many`` and their handles.

A population is one job (``client/population.py`` builds its request); its handle's ``results()``
yields ``(index, GradientResult)`` as each shard of networks completes, and ``result()`` the list.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from edgegrad.engine.result import GradientResult
from edgegrad.errors import InvalidInput, NotFound
from edgegrad.status import job_error
from edgegrad.v1 import job_pb2, service_pb2

from .job import JobHandle
from .options import Deadline
from .population import PreparedPopulation, prepare_population
from .protocol import WatchState, network_lost

__all__ = ["PopulationJobHandle", "PopulationMethods", "end_of_results", "population_request", "refuse_too_large",
           "forget_lost"]


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
        """Every network's GradientResult in ``nets`` order; Cancelled, JobFailed or the job's own error otherwise."""
        self.wait(deadline=deadline or self.client._deadline(timeout))
        return self.state.population_results()


def population_request(nets: Any, inputs: Any, targets: Any, loss: str | None, reduction: str, per_example: bool, dtype: str,
             norms: bool, clip_norm: float | None, outputs_only: bool, shard_networks: int | None,
             request_id: str | None) -> PreparedPopulation:
    return prepare_population(nets, inputs, targets, loss, reduction, per_example, dtype, norms, clip_norm,
                              outputs_only=outputs_only, shard_networks=shard_networks, request_id=request_id)


def refuse_too_large(client: Any, request: service_pb2.SubmitJobRequest) -> None:
    """InvalidInput when the request passes the message limit (populations travel in one message)."""
    size = request.ByteSize()
    if size > client._message_bytes():
        raise InvalidInput(f"nets: the population's request takes {size} bytes, over the message limit of"
                           f" {client._message_bytes()}; send fewer networks (or rows) per call")


def forget_lost(client: Any, referred: list[str]) -> None:
    """The service lost networks the request referred to: send them whole next time."""
    for digest in referred:
        client._forget(digest)
    client.topologies.drop(set(referred))


class PopulationMethods:
    """``Client``'s population calls."""

    def submit_population(self, nets: Any, inputs: Any, targets: Any = None, loss: str | None = None,
                          reduction: str = "mean", per_example: bool = False, dtype: str = "float64",
                          norms: bool = False, clip_norm: float | None = None, shard_networks: int | None = None,
                          request_id: str | None = None, timeout: float | None = None,
                          outputs_only: bool = False) -> PopulationJobHandle:
        """Enqueue ONE job computing ``gradients_many(nets, inputs, ...)``; its shards are groups of networks
        (``shard_networks`` each, else the service's choice). Networks not sent before travel inline."""
        client: Any = self
        prepared = population_request(nets, inputs, targets, loss, reduction, per_example, dtype, norms, clip_norm,
                            outputs_only, shard_networks, request_id)
        deadline = client._deadline(timeout)
        for attempt in (1, 2):
            request, referred, inline = prepared.request(client._is_known, client.topologies)
            if client._needs_limit(request.ByteSize()):
                client.server_max_message = int(client.capabilities(timeout=deadline.remaining()).max_message_bytes)
            refuse_too_large(client, request)
            try:
                handle = client._send(request, deadline, PopulationJobHandle)
            except NotFound as exc:
                if attempt == 2 or not network_lost(exc):
                    raise
                forget_lost(client, referred)
                continue
            prepared.remember(inline, client._remember, client.topologies)
            return handle
        raise AssertionError("unreachable")

    def gradients_many(self, nets: Any, inputs: Any, targets: Any = None, loss: str | None = None,
                       reduction: str = "mean", per_example: bool = False, dtype: str = "float64",
                       norms: bool = False, clip_norm: float | None = None, shard_networks: int | None = None,
                       timeout: float | None = None) -> list[GradientResult]:
        """The same call and results as ``edgegrad.gradients_many``, computed by the service as one job."""
        job = self.submit_population(nets, inputs, targets, loss, reduction, per_example, dtype, norms, clip_norm,
                                     shard_networks, timeout=timeout)
        return job.result(timeout)

    def outputs_many(self, nets: Any, inputs: Any, dtype: str = "float64", shard_networks: int | None = None,
                     timeout: float | None = None) -> list[np.ndarray]:
        """The same as ``edgegrad.outputs_many`` (the forward pass only), computed by the service as one job."""
        job = self.submit_population(nets, inputs, dtype=dtype, shard_networks=shard_networks, timeout=timeout,
                                     outputs_only=True)
        return [r.outputs for r in job.result(timeout)]

    def population_job(self, name: str, *, after_seq: int = 0) -> PopulationJobHandle:
        """A handle on an existing population job by name (``results()`` needs ``after_seq=0``)."""
        return PopulationJobHandle(self, name, after_seq=after_seq)
