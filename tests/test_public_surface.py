"""The public surface is what the docs name: ``edgegrad``'s names and subpackages, the clients' methods."""

from __future__ import annotations

import inspect

import edgegrad
from edgegrad.client import AsyncClient, AsyncJobHandle, Client, JobHandle

#: the methods the README and docs/operations.md name, and the lifecycle ones
CLIENT_METHODS = {"capabilities", "register", "submit", "submit_many", "gradients", "job", "get_job", "list_jobs",
                  "cancel_job", "delete_job", "close", "flush", "gradients_many", "outputs_many", "submit_population",
                  "population_job"}


def _public(cls: type) -> set[str]:
    return {name for name, _ in inspect.getmembers(cls) if not name.startswith("_")}


def test_dir_of_edgegrad_is_its_public_names() -> None:
    names = dir(edgegrad)
    assert {"Client", "AsyncClient", "wait_all", "draw", "interop", "Network", "gradients"} <= set(names)
    assert not {"Any", "TYPE_CHECKING", "annotations"} & set(names)
    assert set(edgegrad.__all__) <= set(names)


def test_both_clients_public_methods_are_the_documented_ones() -> None:
    assert _public(Client) == CLIENT_METHODS and _public(AsyncClient) == CLIENT_METHODS


def test_job_handles_keep_their_internals_private() -> None:
    for cls in (JobHandle, AsyncJobHandle):
        assert not {"open_ahead", "drop_stream", "release_ahead"} & _public(cls)
    assert _public(AsyncJobHandle) <= _public(JobHandle)
