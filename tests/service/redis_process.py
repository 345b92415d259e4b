"""A private redis-server process for fault and security tests (its own port, folder and settings)."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_server_binary() -> str:
    """The system redis-server, or skip."""
    found = shutil.which("redis-server")
    if not found:
        pytest.skip("no redis-server binary on PATH")
    return found


class RedisProcess:
    """redis-server on 127.0.0.1:``port`` with its data in ``folder``; ``args`` are extra options."""

    def __init__(self, folder: Path, *args: str, port: int | None = None, ping: dict | None = None) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.args = list(args)
        self.ping_kwargs = ping or {}  #: how to connect for the readiness PING (TLS, user...)
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> RedisProcess:
        """Start it and wait until it answers."""
        command = [redis_server_binary(), "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.folder),
                   "--save", "", "--daemonize", "no", "--logfile", str(self.folder / "redis.log"), *self.args]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                log = (self.folder / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}: {log}")
            try:
                connection = redis.Redis(**{"host": "127.0.0.1", "port": self.port, "socket_timeout": 2,
                                            **self.ping_kwargs})
                connection.ping()
                connection.close()
                return self
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> RedisProcess:
        return self if self.proc is not None and self.proc.poll() is None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
