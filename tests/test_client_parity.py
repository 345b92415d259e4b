"""``Client`` and ``AsyncClient`` offer the same public methods, each with the same parameters (no server needed)."""

from __future__ import annotations

import inspect

from edgegrad.client import AsyncClient, Client


def _public(cls: type) -> list[str]:
    return sorted(name for name in dir(cls) if not name.startswith("_"))


def _parameters(function: object) -> list[tuple[str, object, object]]:
    """Name, kind and default of each parameter (annotations differ: Iterator on one, AsyncIterator on the other)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def test_both_clients_expose_the_same_public_names() -> None:
    assert _public(Client) == _public(AsyncClient)


def test_each_method_takes_the_same_parameters_on_both_clients() -> None:
    for name in ["__init__", *_public(Client)]:
        sync, aio = inspect.getattr_static(Client, name), inspect.getattr_static(AsyncClient, name)
        assert type(sync) is type(aio), f"{name}: {type(sync).__name__} on Client, {type(aio).__name__} on AsyncClient"
        if callable(sync):
            assert _parameters(sync) == _parameters(aio), name
