"""``edgegrad grad`` and EDGEGRAD_SERVER: with it set, grad uses that server; ``--local`` computes in-process."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

import edgegrad
from edgegrad.cli import main

ROOT = Path(__file__).resolve().parent.parent
XOR = str(ROOT / "examples" / "xor.json")
XOR_X = str(ROOT / "examples" / "xor-inputs.json")


@pytest.fixture
def refused(monkeypatch: pytest.MonkeyPatch) -> str:
    """EDGEGRAD_SERVER set to an address where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("EDGEGRAD_SERVER", address)
    return address


def test_grad_uses_the_server_the_environment_names(refused: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["grad", XOR, "--inputs", XOR_X]) == 3
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"error: server {refused}: unreachable"), err


def test_grad_local_computes_in_process_whatever_is_set(refused: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["grad", XOR, "--inputs", XOR_X, "--local"]) == 0
    out, err = capsys.readouterr()
    expected = edgegrad.gradients(edgegrad.Network.load(XOR), json.loads(Path(XOR_X).read_text()))
    assert err == "" and json.loads(out)["edge_grads"] == expected.edge_grads.tolist()


def test_grad_local_with_server_is_bad_input(refused: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["grad", XOR, "--inputs", XOR_X, "--local", "--server", refused]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: --local: computes in-process; give either --local or --server")


def test_grad_without_either_computes_in_process(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture) -> None:
    monkeypatch.delenv("EDGEGRAD_SERVER", raising=False)
    assert main(["grad", XOR, "--inputs", XOR_X]) == 0
    assert json.loads(capsys.readouterr().out)["nodes"]
