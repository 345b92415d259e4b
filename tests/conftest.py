"""What every test shares: the ``service`` mark of the folders that need processes or Redis, and the
``each_kernel`` fixture. Nothing here imports the server or contacts Redis, so ``-m "not service"``
needs neither; the service tests' Redis is arranged in tests/service/conftest.py when one runs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from unittest import mock

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/service/ and tests/compose/ is a ``service`` test (modules elsewhere mark themselves)."""
    here = os.path.dirname(os.path.abspath(__file__))
    folders = {os.path.join(here, "service"), os.path.join(here, "compose")}
    for item in items:
        if os.path.dirname(str(item.path)) in folders:
            item.add_marker(pytest.mark.service)


@pytest.fixture(params=["numpy", "compiled"])
def each_kernel(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run a test once on each engine kernel (EDGEGRAD_KERNEL=numpy, then compiled): every path forced.

    numba is a dependency, so the compiled kernels must load; a test module opts in with
    ``pytestmark = pytest.mark.usefixtures("each_kernel")``.
    """
    from edgegrad.engine import kernel

    if request.param == "compiled":
        assert kernel.available(), "the compiled kernels do not load (is numba installed?)"
    with mock.patch.dict(os.environ, {"EDGEGRAD_KERNEL": request.param}):
        yield request.param
