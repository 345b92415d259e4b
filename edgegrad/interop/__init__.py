"""Networks from where they live: PyTorch, plain weight lists, neat-python genomes and networkx graphs.

One small module per library (``layers``, ``torchnet``, ``neatnet``, ``nxgraph``); each optional
library is imported only when its function is called, and a missing one raises ``MissingExtra``
naming the extra to install (``pip install 'edgegrad[torch]'`` and so on). ``Network`` exposes
them as the classmethods ``from_layers``, ``from_torch``, ``from_neat``, ``from_networkx`` and the
method ``to_networkx``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import MissingExtra

__all__ = ["require"]

#: the one-library modules, imported on first use (``edgegrad.interop.layers.layer_grads`` after ``import edgegrad``)
_MODULES = ("layers", "torchnet", "neatnet", "nxgraph")


def __getattr__(name: str) -> ModuleType:
    """Import one library's module when it is first used."""
    if name in _MODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'edgegrad.interop' has no attribute {name!r}")


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Import an optional library, or raise ``MissingExtra`` naming the extra that brings it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(f"{feature} needs {module.split('.')[0]}, which is not installed"
                           f" ({exc}): pip install 'edgegrad[{extra}]'") from None
