"""The README's in-process example runs as written (the service part is covered by tests/service)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_python_example_runs(monkeypatch) -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    in_process = code.split("with edgegrad.Client")[0]
    monkeypatch.chdir(ROOT)
    scope: dict = {}
    exec(compile(in_process, "README.md", "exec"), scope)
    res = scope["res"]
    assert res.edge_grads.shape == (4, 6) and res.deltas.shape == (4, 3)      # per_example: B×E, B×N
    np.testing.assert_allclose(res.edge_grads.sum(axis=0),
                               scope["edgegrad"].gradients(scope["net"], scope["X"], targets=scope["T"],
                                                           loss="bce", reduction="sum").edge_grads, rtol=1e-12)
    clipped = scope["clipped"]
    assert clipped.norms.shape == (4,) and clipped.edge_grads.shape == (6,)


def test_the_readme_commands_are_the_ones_ci_and_the_demo_use() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "bash scripts/demo.sh" in text and ".venv/bin/python -m pytest" in text
    assert ".venv/bin/python -m pytest" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
