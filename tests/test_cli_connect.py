"""The command line's first connection: a refused one is reported within 2 s, a silent address within
CONNECT_TIMEOUT_SECONDS (exit 3, one line); ``--server garbage`` is bad input (exit 2) before any try."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgegrad.cli import main, remote

ROOT = Path(__file__).resolve().parent.parent
XOR = str(ROOT / "examples" / "xor.json")
XOR_X = str(ROOT / "examples" / "xor-inputs.json")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def silent_address() -> Iterator[str]:
    """An address that accepts TCP connections (the kernel's backlog) and never says a word."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield f"127.0.0.1:{s.getsockname()[1]}"


def _run(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, float]:
    start = time.monotonic()
    status = main(args)
    took = time.monotonic() - start
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1, err
    return status, err, took


@pytest.mark.parametrize("command", [["jobs", "list"], ["grad", XOR, "--inputs", XOR_X]])
def test_a_refused_connection_is_reported_within_2_s(command: list[str], capsys: pytest.CaptureFixture) -> None:
    address = f"127.0.0.1:{_free_port()}"
    status, err, took = _run([*command, "--server", address], capsys)
    assert status == 3 and err.startswith(f"error: server {address}: unreachable"), err
    assert took < 2.0, f"{took:.1f} s to report a refused connection"


def test_a_silent_address_is_reported_after_the_connect_timeout(silent_address: str, capsys: pytest.CaptureFixture,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remote, "CONNECT_TIMEOUT_SECONDS", 1.0)
    status, err, took = _run(["jobs", "list", "--server", silent_address], capsys)
    assert status == 3 and err.startswith(f"error: server {silent_address}: unreachable"), err
    assert 0.9 < took < 3.0, f"{took:.1f} s for a connect timeout of 1 s"


def test_a_server_that_is_no_address_is_bad_input(capsys: pytest.CaptureFixture) -> None:
    status, err, took = _run(["jobs", "list", "--server", "garbage"], capsys)
    assert status == 2 and err.startswith("error: --server: expected HOST:PORT, [IPV6]:PORT, unix:PATH"), err
