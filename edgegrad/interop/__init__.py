"""Networks from where they live: PyTorch, plain weight lists, neat-python genomes and networkx graphs.

One small module per library (``layers``, ``torchnet``, ``neatnet``, ``nxgraph``); each optional
library is imported only when its function is called, and a missing one raises ``MissingExtra``
naming the extra to install (``pip install 'edgegrad[torch]'`` and so on). ``Network`` exposes
them as the classmethods ``from_layers``, ``from_torch``, ``from_neat``, ``from_networkx`` and the
method ``to_networkx``, which call what this package registers in ``model/converters.py`` (the
model imports nothing of interop; ``edgegrad``'s ``__init__`` imports this package).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

from ..errors import MissingExtra
from ..model import converters

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


def _on_first_call(module: str, name: str) -> Callable[..., Any]:
    """``module.name``, the module imported when the function is first called."""
    def call(*args: Any) -> Any:
        return getattr(importlib.import_module(f".{module}", __name__), name)(*args)
    call.__name__ = call.__qualname__ = name
    return call


for _name, _module in (("from_layers", "layers"), ("from_torch", "torchnet"), ("from_neat", "neatnet"),
                       ("from_networkx", "nxgraph"), ("to_networkx", "nxgraph")):
    converters.register(_name, _on_first_call(_module, _name))
