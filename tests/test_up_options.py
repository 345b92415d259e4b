"""``edgegrad up`` before it starts anything: a taken port is one line and exit 2; its help and --log-level."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from edgegrad.cli import main
from edgegrad.server.app import create_server
from edgegrad.settings import Settings


@pytest.fixture
def taken_port():
    """A port some other program listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        yield s.getsockname()[1]


def test_up_on_a_taken_port_is_one_line_naming_it_and_nothing_starts(taken_port: int, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "data"
    assert main(["up", "--port", str(taken_port), "--data-dir", str(data), "--workers", "1"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1, err
    assert err.startswith(f"error: --port: 127.0.0.1:{taken_port} is already in use") and "--port 0" in err, err
    assert not data.exists(), "nothing is started when the port is taken"


def test_the_server_on_a_taken_port_says_so(taken_port: int) -> None:
    async def create() -> None:  # as the server does it: in its event loop
        create_server(Settings.from_env(), f"127.0.0.1:{taken_port}")

    with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{taken_port} \\(is another server using"):
        asyncio.run(create())


def test_up_help_describes_it_and_offers_a_log_level(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as done:
        main(["up", "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Run the whole service on this machine" in text and "stays quiet but for warnings and errors" in text
    assert "--log-level {DEBUG,INFO,WARNING,ERROR}" in text and "default WARNING" in text


@pytest.mark.parametrize("command", ["server", "worker"])
def test_server_and_worker_can_leave_job_events_to_the_log_level(command: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "--no-job-events" in capsys.readouterr().out
