"""Start a server and N worker processes programmatically (tests, ``edgegrad up``, benchmarks)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import IO

from edgegrad.jobs.connections import sync_redis
from edgegrad.jobs.namespace import delete_namespace  # noqa: F401 - still importable from here
from edgegrad.metrics import process_ports
from edgegrad.settings import ENV_NAMES, Settings

__all__ = ["Cluster", "settings_env", "die_with_parent", "delete_namespace", "blas_env"]


def die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the starting process dies (Linux), so no orphans."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the parent's stop() is the only clean-up
        pass


_PR_SET_PDEATHSIG = 1
_CHILD_SETUP = die_with_parent if sys.platform.startswith("linux") else None


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment variables that reproduce ``settings`` in a child process."""
    env = {}
    for name, var in ENV_NAMES.items():
        value = getattr(settings, name)
        if value != "":
            env[var] = str(value)
    return env


#: the thread counts OpenBLAS and OpenMP read once, when they load
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")


def blas_env(env: dict[str, str]) -> dict[str, str]:
    """A worker's environment with BLAS's threads set to its engine threads (``EDGEGRAD_THREADS``) from
    the start, unless set already. The worker limits BLAS again at start (threadpoolctl), but threads
    OpenBLAS started when it loaded still cost CPU: with them, a worker of one engine thread used
    about 1 s more CPU on a 688 MiB per-example job (benchmarks/batch.py)."""
    threads = env.get(ENV_NAMES["threads"], "")
    if not threads.isdigit() or int(threads) < 1:
        return env
    return {**{name: threads for name in BLAS_THREAD_VARIABLES}, **env}


class Cluster:
    """A server process and worker processes sharing one Redis; a context manager.

    ``address`` is ``127.0.0.1:<port>`` once started (port 0 picks a free one).
    Children's output goes to ``log`` (default: inherited stderr). With a metrics port configured,
    ``metrics_ports`` holds the server's and then each worker slot's (a replaced worker keeps its slot's).
    """

    def __init__(self, settings: Settings, workers: int = 1, host: str = "127.0.0.1", port: int = 0,
                 log: IO[str] | None = None, python: str = sys.executable, log_level: str | None = None) -> None:
        self.settings = settings
        self.n_workers = workers
        self.host, self.port = host, port
        self.log = log
        self.python = python
        #: the children's --log-level; with one, job events follow it too (None: the server's default, INFO
        #: and every job event; the workers at WARNING with their job events)
        self.log_level = log_level
        self.server: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self._env = {**os.environ, **settings_env(settings), "PYTHONUNBUFFERED": "1"}
        self._count = 0
        self.metrics_ports = process_ports(settings, 1 + workers)
        self._slots: dict[subprocess.Popen, int] = {}

    @property
    def address(self) -> str:
        """HOST:PORT clients connect to."""
        return f"{self.host}:{self.port}"

    def worker_name(self, index: int) -> str:
        """The rq name of the index-th worker started."""
        return f"{self.settings.queue}.w{index}.{os.getpid()}"

    def start(self, timeout: float = 30.0) -> Cluster:
        """Start the server (waiting until it listens) and the workers."""
        self.server = subprocess.Popen(
            [self.python, "-m", "edgegrad", "server", "--listen", f"{self.host}:{self.port}", *self._log_args()],
            env=self._metrics_env(0), stdout=subprocess.PIPE, stderr=self.log, text=True, start_new_session=True,
            preexec_fn=_CHILD_SETUP)
        self.port = self._wait_for_port(self.server, timeout)
        for _ in range(self.n_workers):
            self.add_worker()
        return self

    def add_worker(self) -> subprocess.Popen:
        """Start one more worker process."""
        name = self.worker_name(self._count)
        self._count += 1
        taken = {self._slots.get(p) for p in self.workers}
        slot = next(i for i in range(len(self.workers) + 1) if i not in taken)
        proc = subprocess.Popen([self.python, "-m", "edgegrad", "worker", "--name", name,
                                 *(self._log_args() or ["--log-level", "WARNING"])],
                                env=blas_env(self._metrics_env(1 + slot)), stdout=self.log, stderr=self.log,
                                start_new_session=True, preexec_fn=_CHILD_SETUP)
        self.workers.append(proc)
        self._slots[proc] = slot
        return proc

    def _log_args(self) -> list[str]:
        """The children's logging options: ``--log-level`` and, with one, ``--no-job-events``."""
        return [] if self.log_level is None else ["--log-level", self.log_level, "--no-job-events"]

    def _metrics_env(self, index: int) -> dict[str, str]:
        """The children's environment, with the index-th metrics port (0: the server) when metrics are on."""
        if not self.metrics_ports:
            return self._env
        ports = self.metrics_ports
        port = ports[index] if index < len(ports) else ports[-1] + index - len(ports) + 1
        return {**self._env, ENV_NAMES["metrics_port"]: str(port)}

    def kill_worker(self, index: int) -> None:
        """SIGKILL one worker (as a crash would)."""
        proc = self.workers[index]
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def wait_for_workers(self, timeout: float = 30.0, stop: threading.Event | None = None) -> None:
        """Block until every worker has registered with rq (so the first job starts at once), a stop
        is signalled, or ``timeout`` passes; RuntimeError if every worker has exited."""
        from rq import Queue, Worker

        stop = stop or threading.Event()
        connection = sync_redis(self.settings)
        try:
            queue = Queue(self.settings.queue, connection=connection)
            end = time.monotonic() + timeout
            while not stop.is_set() and time.monotonic() < end:
                if Worker.count(queue=queue) >= len(self.workers):
                    return
                if self.workers and all(proc.poll() is not None for proc in self.workers):
                    raise RuntimeError("every edgegrad worker exited at start; see the messages above")
                stop.wait(0.05)
        finally:
            connection.close()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM everything, wait, then SIGKILL what is left."""
        procs = [p for p in [self.server, *self.workers] if p is not None and p.poll() is None]
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.server is not None and self.server.stdout:
            self.server.stdout.close()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wait_for_port(self, proc: subprocess.Popen, timeout: float) -> int:
        found: list[int] = []

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                match = re.search(r"listening on port (\d+)", line)
                if match and not found:
                    found.append(int(match.group(1)))
                if self.log is not None:
                    self.log.write(line)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        deadline = time.monotonic() + timeout
        while not found:
            if proc.poll() is not None:
                raise RuntimeError(f"edgegrad server exited with status {proc.returncode} before listening")
            if time.monotonic() > deadline:
                proc.kill()
                raise TimeoutError("edgegrad server did not start listening in time")
            time.sleep(0.02)
        return found[0]
