"""edgegrad: exact gradients of neural networks given as arbitrary directed acyclic graphs."""

import importlib as _importlib
import typing as _typing

from . import interop as interop  # registers Network.from_torch and its siblings (libraries load when called)
from .engine.api import gradients
from .engine.population import gradients_many, outputs, outputs_many
from .engine.result import GradientResult
from .errors import EdgegradError, InvalidInput, NotFound
from .model.network import Network

if _typing.TYPE_CHECKING:  # pragma: no cover
    from . import draw as draw
    from .client import AsyncClient, Client, async_wait_all, wait_all

__all__ = [
    "Network",
    "GradientResult",
    "gradients",
    "gradients_many",
    "outputs",
    "outputs_many",
    "Client",
    "AsyncClient",
    "wait_all",
    "async_wait_all",
    "EdgegradError",
    "InvalidInput",
    "NotFound",
]

__version__ = "0.1.0"

#: names imported on first use, so the in-process engine starts fast: the gRPC client's, and the
#: subpackages the docs call through ``edgegrad.`` (``edgegrad.draw.draw``); ``edgegrad.interop`` is
#: imported above (light: its one-library modules load when first used, ``edgegrad.interop.layers``)
_CLIENT_NAMES = ("Client", "AsyncClient", "wait_all", "async_wait_all")
_SUBPACKAGES = ("draw", "client", "errors")


def __getattr__(name: str) -> _typing.Any:
    """Import the gRPC client and the optional subpackages lazily."""
    if name in _CLIENT_NAMES:
        return getattr(_importlib.import_module(".client", __name__), name)
    if name in _SUBPACKAGES:
        return _importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'edgegrad' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names, and the subpackages reached through ``edgegrad.``."""
    return sorted({*__all__, *_SUBPACKAGES, "interop", "__version__"})
