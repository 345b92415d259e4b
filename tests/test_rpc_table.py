"""The server's method table comes from the service descriptor; a missing handler stops start-up."""

from __future__ import annotations

import pytest

from edgegrad.server import app
from edgegrad.server.auth import Authenticator
from edgegrad.v1 import service_pb2


class _AnyService:
    """Stands in for ``Service`` where only the table is built (no call is made)."""

    def __getattr__(self, name: str):
        return lambda *args: None


def test_every_declared_rpc_has_a_handler() -> None:
    declared = {m.name for m in service_pb2.DESCRIPTOR.services_by_name["Edgegrad"].methods}
    assert set(app._implementations(_AnyService())) == declared
    assert app._handlers(_AnyService(), Authenticator({})).service_name() == "edgegrad.v1.Edgegrad"


def test_a_missing_handler_fails_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    full = app._implementations
    monkeypatch.setattr(app, "_implementations", lambda s: {k: v for k, v in full(s).items() if k != "AckJob"})
    with pytest.raises(RuntimeError, match="AckJob"):
        app._handlers(_AnyService(), Authenticator({}))
