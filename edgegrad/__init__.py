"""edgegrad: exact gradients of neural networks given as arbitrary directed acyclic graphs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .engine.api import gradients
from .errors import (
    EdgegradError,
    InvalidInput,
    NotFound,
)
from .model.network import Network
from .engine.result import GradientResult

if TYPE_CHECKING:  # pragma: no cover
    from .client import AsyncClient, Client

__all__ = [
    "Network",
    "GradientResult",
    "gradients",
    "Client",
    "AsyncClient",
    "wait_all",
    "async_wait_all",
    "EdgegradError",
    "InvalidInput",
    "NotFound",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """Import the gRPC client lazily so the in-process engine starts fast."""
    if name in ("Client", "AsyncClient", "wait_all", "async_wait_all"):
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module 'edgegrad' has no attribute {name!r}")
