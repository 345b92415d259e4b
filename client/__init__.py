"""The edgegrad service client: ``Client`` (blocking) and ``AsyncClient`` (asyncio), with job handles."""

from __future__ import annotations

from .aio import AsyncClient, AsyncJobHandle
from .job import JobHandle
from .options import Backoff
from .sync import Client

__all__ = ["Client", "AsyncClient", "JobHandle", "AsyncJobHandle", "Backoff"]
