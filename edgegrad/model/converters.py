"""The table of ``Network``'s converters from and to other libraries, filled by ``edgegrad.interop``.

The model imports no importer: ``Network.from_torch`` and its siblings call the function registered
here under their own name, and ``edgegrad.interop`` (imported by ``edgegrad``'s ``__init__``, so before
any ``Network`` exists) registers one for each, importing its one-library module only when called.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["register", "converter"]

_CONVERTERS: dict[str, Callable[..., Any]] = {}


def register(name: str, function: Callable[..., Any]) -> None:
    """Make ``function`` what ``Network.<name>`` calls."""
    _CONVERTERS[name] = function


def converter(name: str) -> Callable[..., Any]:
    """What ``Network.<name>`` calls (registered by ``edgegrad.interop``)."""
    return _CONVERTERS[name]
