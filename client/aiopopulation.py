"""The asyncio client's population calls (``AsyncPopulationMethods``) and ``AsyncPopulationJobHandle``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from edgegrad.engine.result import GradientResult
from edgegrad.errors import NotFound

from .aiojob import AsyncJobHandle
from .options import Deadline
from .population_jobs import PopulationSubmission, end_of_results, population_request

__all__ = ["AsyncPopulationJobHandle", "AsyncPopulationMethods"]


class AsyncPopulationJobHandle(AsyncJobHandle):
    """The asyncio twin of ``PopulationJobHandle``: ``async for index, res in job.results()``."""

    async def results(self, timeout: float | None = None) -> AsyncIterator[tuple[int, GradientResult]]:
        """Each network's result as its shard completes, in any order; stops after a cancel."""
        for ready in self.state.take_ready():
            yield ready
        async for _ in self._chunks(self.client._deadline(timeout)):
            for ready in self.state.take_ready():
                yield ready
        for ready in self.state.take_ready():
            yield ready
        end_of_results(self.state)

    async def result(self, timeout: float | None = None, *,  # type: ignore[override]
                     deadline: Deadline | None = None) -> list[GradientResult]:
        """Every network's GradientResult in ``nets`` order (as soon as the last chunk arrives)."""
        chunks = self._chunks(deadline or self.client._deadline(timeout))
        try:
            async for _ in chunks:
                if self.state.population_whole():
                    break
                self.state.build_whole()   # while the next chunks are on their way
        finally:
            await chunks.aclose()  # and its stream
        return self.state.population_results()


class AsyncPopulationMethods:
    """``AsyncClient``'s population calls (as ``Client``'s, awaited)."""

    async def submit_population(self, nets: Any, inputs: Any, targets: Any = None, loss: str | None = None,
                                reduction: str = "mean", per_example: bool = False, dtype: str = "float64",
                                norms: bool = False, clip_norm: float | None = None,
                                shard_networks: int | None = None, request_id: str | None = None,
                                timeout: float | None = None, outputs_only: bool = False,
                                shard_rows: int | None = None) -> AsyncPopulationJobHandle:
        """Enqueue ONE job computing ``gradients_many(nets, inputs, ...)`` (see ``Client.submit_population``)."""
        client: Any = self  # the AsyncClient this is a part of
        steps = PopulationSubmission(client, population_request(nets, inputs, targets, loss, reduction, per_example,
                                                                dtype, norms, clip_norm, outputs_only, shard_networks,
                                                                request_id, shard_rows))
        deadline = client._deadline(timeout)
        while True:  # at most twice: refused() raises the second time
            await client._learn_limit(steps.payload_bytes, deadline)
            request = steps.inline()
            if request is None:  # larger than one message: what does not fit goes in an upload first
                upload = await client._retrying(lambda left: client.stub.UploadBatch(
                    steps.pieces(), timeout=left, metadata=client._metadata), deadline)
                request = steps.request(upload.id)
            try:
                handle = await client._send(steps.check(request), deadline, AsyncPopulationJobHandle)
            except NotFound as exc:
                steps.refused(exc)
                continue
            return steps.sent(handle)

    async def gradients_many(self, nets: Any, inputs: Any, targets: Any = None, loss: str | None = None,
                             reduction: str = "mean", per_example: bool = False, dtype: str = "float64",
                             norms: bool = False, clip_norm: float | None = None,
                             shard_networks: int | None = None, timeout: float | None = None,
                             shard_rows: int | None = None) -> list[GradientResult]:
        """The same call and results as ``edgegrad.gradients_many``, computed by the service as one job."""
        job = await self.submit_population(nets, inputs, targets, loss, reduction, per_example, dtype, norms,
                                           clip_norm, shard_networks, timeout=timeout, shard_rows=shard_rows)
        return await job.result(timeout)

    async def outputs_many(self, nets: Any, inputs: Any, dtype: str = "float64", shard_networks: int | None = None,
                           timeout: float | None = None, shard_rows: int | None = None) -> list[np.ndarray]:
        """The same as ``edgegrad.outputs_many``, computed by the service as one job."""
        job = await self.submit_population(nets, inputs, dtype=dtype, shard_networks=shard_networks,
                                           timeout=timeout, outputs_only=True, shard_rows=shard_rows)
        return [r.outputs for r in await job.result(timeout)]

    def population_job(self, name: str, *, after_seq: int = 0) -> AsyncPopulationJobHandle:
        """A handle on an existing population job by name."""
        client: Any = self  # the AsyncClient this is a part of
        return AsyncPopulationJobHandle(client, name, after_seq=after_seq)
