"""benchmarks/load.py runs end to end on a small network, and its network takes the quick loading road."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import load  # noqa: E402


def test_the_load_benchmark_runs_and_takes_the_quick_road(capsys: pytest.CaptureFixture[str]) -> None:
    assert load.main(["--width", "20", "--rounds", "1", "--exact"]) == 0
    out = capsys.readouterr().out
    assert "quick road taken: yes; loads equal the generated network: yes" in out
    assert "Network.load (.json) ÷ json.loads" in out and "exact road alone" in out
