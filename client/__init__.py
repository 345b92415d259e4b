"""The edgegrad service client: ``Client`` (blocking) and ``AsyncClient`` (asyncio), with job handles."""

from __future__ import annotations

from .aio import AsyncClient, AsyncJobHandle
from .aiopopulation import AsyncPopulationJobHandle
from .base import state_name
from .job import JobHandle
from .options import Backoff
from .population_jobs import PopulationJobHandle
from .sync import Client
from .waiting import async_wait_all, wait_all

__all__ = ["Client", "AsyncClient", "JobHandle", "AsyncJobHandle", "Backoff", "wait_all", "async_wait_all",
           "state_name", "PopulationJobHandle", "AsyncPopulationJobHandle"]
