"""``AsyncPopulationJobHandle``: a population job seen from the asyncio client."""

from __future__ import annotations

from collections.abc import AsyncIterator

from edgegrad.engine.result import GradientResult

from .aio import AsyncJobHandle
from .options import Deadline
from .population_jobs import end_of_results

__all__ = ["AsyncPopulationJobHandle"]


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
        """Every network's GradientResult in ``nets`` order."""
        await self.wait(deadline=deadline or self.client._deadline(timeout))
        return self.state.population_results()
