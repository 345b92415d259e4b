"""After a plain ``import edgegrad`` in a fresh interpreter, the subpackages the docs name work."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.service  # starts a process


def test_the_subpackages_the_docs_name_work_after_a_plain_import() -> None:
    code = ("import edgegrad; print(edgegrad.draw.draw.__name__, edgegrad.interop.layers.layer_grads.__name__,"
            " edgegrad.interop.neatnet.map_genome.__name__, edgegrad.Client.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.split() == ["draw", "layer_grads", "map_genome", "Client"], out.stderr
