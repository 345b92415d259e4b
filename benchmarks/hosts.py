"""Several "hosts" on one machine: workers in their own network namespaces, reaching one Redis and the
edgegrad server in the root namespace over veth links (the multi-host test and benchmark).

Layout, all of it created here and deleted at the end (also after a failure; what a killed run left
behind is deleted by the next run):

- a bridge ``egb<pid in hex>-<n>`` (n counts the link sets of one process) in the root namespace
  with ``10.213.X.1/24``, X the first /24 of 10.213.0.0/16 that no interface or route of this machine
  uses yet;
- host k (1..N): namespace ``edgegrad-<pid>-<n>-host<k>``, a veth pair whose root end
  ``ev<pid in hex>-<n>h<k>`` is on the bridge and whose other end ``eth0`` has
  ``10.213.X.(10+k)/24``. No default route, no
  forwarding: a namespace reaches the root namespace's bridge address and nothing else;
- a private redis-server listening on the bridge address, the edgegrad server listening there too,
  and workers named ``host<k>-w<j>`` started with ``ip netns exec``.

Needs Linux, root and iproute2; otherwise ``NamespacesUnavailable`` says why.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from typing import IO, Any

import redis
from rq import Queue, Worker

from edgegrad.server.cluster import Cluster, die_with_parent
from edgegrad.server.up import EmbeddedRedis
from edgegrad.settings import Settings

__all__ = ["NamespacesUnavailable", "unavailable_reason", "Links", "HostCluster", "HostFleet", "host_of"]

POOL = ipaddress.ip_network("10.213.0.0/16")
_NETNS = re.compile(r"^edgegrad-(\d+)-\d+-host\d+$")
_BRIDGE = re.compile(r"^egb([0-9a-f]+)-\d+$")                  # interface names: 15 characters at most
_serials = itertools.count()
_LOCK = os.path.join(tempfile.gettempdir(), "edgegrad-netns.lock")


class NamespacesUnavailable(RuntimeError):
    """Network namespaces cannot be made here (not Linux, not root, no ``ip``, or the kernel refused)."""


def unavailable_reason() -> str | None:
    """Why namespaces cannot be made here, or None if they may be (the kernel may still refuse)."""
    if not sys.platform.startswith("linux"):
        return f"network namespaces are Linux only (this is {sys.platform})"
    if os.geteuid() != 0:
        return f"creating network namespaces needs root (euid {os.geteuid()})"
    if shutil.which("ip") is None:
        return "no 'ip' command (iproute2) on PATH"
    return None


def host_of(worker: str) -> str:
    """The host part of a worker name made here: ``host2-w0`` -> ``host2``."""
    return worker.rsplit("-w", 1)[0]


def _ip(*args: str) -> str:
    """Run ``ip ARGS``; RuntimeError with its message if it fails."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip() or f'exit status {done.returncode}'}")
    return done.stdout


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reap_stale() -> None:
    """Delete namespaces and bridges made here by processes that no longer run."""
    for line in _ip("netns", "list").splitlines():
        name = line.split()[0] if line.strip() else ""
        match = _NETNS.match(name)
        if match and not _alive(int(match.group(1))):
            with contextlib.suppress(RuntimeError):
                _ip("netns", "delete", name)
    for link in json.loads(_ip("-j", "link", "show", "type", "bridge") or "[]"):
        match = _BRIDGE.match(link.get("ifname", ""))
        if match and not _alive(int(match.group(1), 16)):
            with contextlib.suppress(RuntimeError):
                _ip("link", "delete", link["ifname"])


def _free_subnet() -> ipaddress.IPv4Network:
    """The first /24 of ``POOL`` that no address or route of the root namespace overlaps."""
    used = []
    for link in json.loads(_ip("-j", "-4", "addr", "show") or "[]"):
        for info in link.get("addr_info", []):
            used.append(ipaddress.ip_network(f"{info['local']}/{info['prefixlen']}", strict=False))
    for route in json.loads(_ip("-j", "-4", "route", "show", "table", "all") or "[]"):
        dst = route.get("dst", "default")
        if dst != "default" and route.get("type", "unicast") in ("unicast", "local"):
            used.append(ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", strict=False))
    for candidate in POOL.subnets(new_prefix=24):
        if not any(candidate.overlaps(net) for net in used):
            return candidate
    raise RuntimeError(f"every /24 of {POOL} is in use on this machine")


class Links:
    """``n`` network namespaces, each joined by a veth pair to one bridge in the root namespace."""

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError("at least one host")
        if n > 99:
            raise ValueError("at most 99 hosts")
        pid, serial = os.getpid(), next(_serials) % 1000
        self.n = n
        self.bridge = f"egb{pid:x}-{serial}"
        self.namespaces = [f"edgegrad-{pid}-{serial}-host{k}" for k in range(1, n + 1)]
        self._veths = [f"ev{pid:x}-{serial}h{k}" for k in range(1, n + 1)]
        self.subnet: ipaddress.IPv4Network | None = None
        self._made: list[str] = []

    @property
    def gateway(self) -> str:
        """The root namespace's address on the links (Redis and the server listen there)."""
        assert self.subnet is not None, "links not created"
        return str(self.subnet.network_address + 1)

    def address(self, k: int) -> str:
        """Host k's address (k from 1)."""
        assert self.subnet is not None, "links not created"
        return str(self.subnet.network_address + 10 + k)

    def exec_prefix(self, k: int) -> list[str]:
        """The command prefix that runs a program on host k."""
        return ["ip", "netns", "exec", self.namespaces[k - 1]]

    def create(self) -> Links:
        """Make the bridge, the namespaces and the links; NamespacesUnavailable if not permitted."""
        reason = unavailable_reason()
        if reason:
            raise NamespacesUnavailable(reason)
        with open(_LOCK, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)            # two runs at once pick different subnets
            try:
                _reap_stale()
                try:
                    _ip("netns", "add", self.namespaces[0])
                except RuntimeError as exc:
                    raise NamespacesUnavailable(f"the kernel refused a network namespace: {exc}") from None
                self._made.append(self.namespaces[0])
                self._build()
            except BaseException:
                self.delete()
                raise
        return self

    def _build(self) -> None:
        self.subnet = _free_subnet()
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for k, (ns, veth) in enumerate(zip(self.namespaces, self._veths), start=1):
            if ns not in self._made:
                _ip("netns", "add", ns)
                self._made.append(ns)
            _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", veth, "master", self.bridge, "up")
            _ip("-n", ns, "addr", "add", f"{self.address(k)}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")

    def delete(self) -> None:
        """Delete the namespaces (their veth pairs go with them) and the bridge; safe to call twice."""
        for ns in self._made:
            with contextlib.suppress(RuntimeError):
                _ip("netns", "delete", ns)
        self._made = []
        if self.subnet is not None:
            with contextlib.suppress(RuntimeError):
                _ip("link", "delete", self.bridge)
        for veth in self._veths:                          # only left if a namespace add failed half-way
            if os.path.exists(f"/sys/class/net/{veth}"):
                with contextlib.suppress(RuntimeError):
                    _ip("link", "delete", veth)

    def __enter__(self) -> Links:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.delete()


class HostCluster(Cluster):
    """A ``Cluster`` whose server listens on the links' gateway and whose workers run on the hosts:
    worker i goes to host ``i // workers_per_host + 1`` and is named ``host<k>-w<j>``."""

    def __init__(self, settings: Settings, links: Links, workers_per_host: int = 1,
                 log: IO[str] | None = None, env: Mapping[str, str] | None = None) -> None:
        super().__init__(settings, workers=links.n * workers_per_host, host=links.gateway, port=0, log=log)
        self._env.update(env or {})
        self.links = links
        self.workers_per_host = workers_per_host

    def worker_name(self, index: int) -> str:
        """``host<k>-w<j>``: the j-th worker of host k."""
        return f"host{index // self.workers_per_host + 1}-w{index % self.workers_per_host}"

    def add_worker(self) -> subprocess.Popen:
        """Start the next worker inside its host's namespace."""
        index = self._count
        self._count += 1
        host = index // self.workers_per_host + 1
        command = [*self.links.exec_prefix(host), self.python, "-m", "edgegrad", "worker",
                   "--name", self.worker_name(index), "--log-level", "WARNING"]
        proc = subprocess.Popen(command, env=self._env, stdout=self.log, stderr=self.log, start_new_session=True,
                                preexec_fn=die_with_parent)
        self.workers.append(proc)
        return proc


class HostFleet:
    """Links to ``hosts`` namespaces, a private Redis and the edgegrad server on the gateway, and
    ``workers_per_host`` workers on each host; a context manager that deletes everything at the end.

    ``settings_overrides`` go to ``Settings.from_env`` (the Redis URL is always the private one);
    ``env`` adds environment variables for the server and workers (e.g. ``EDGEGRAD_THREADS``).
    """

    def __init__(self, hosts: int = 2, workers_per_host: int = 1, log: IO[str] | None = None,
                 env: Mapping[str, str] | None = None, **settings_overrides: Any) -> None:
        self.links = Links(hosts)
        self.env = dict(env or {})
        self.workers_per_host = workers_per_host
        self.log = log
        self.overrides = settings_overrides
        self.redis: EmbeddedRedis | None = None
        self.cluster: HostCluster | None = None
        self._data_dir: str | None = None

    @property
    def address(self) -> str:
        """The server's HOST:PORT on the gateway (what clients connect to)."""
        assert self.cluster is not None, "fleet not started"
        return self.cluster.address

    @property
    def settings(self) -> Settings:
        """The settings every process of the fleet runs with."""
        assert self.cluster is not None, "fleet not started"
        return self.cluster.settings

    def registered(self) -> list[str]:
        """Names of the workers registered with rq on the fleet's queue."""
        connection = redis.Redis.from_url(self.settings.redis_url)
        try:
            return sorted(w.name for w in Worker.all(queue=Queue(self.settings.queue, connection=connection)))
        finally:
            connection.close()

    def start(self, timeout: float = 60.0) -> HostFleet:
        """Create the links, start Redis, the server and the workers; wait until every worker registered."""
        self.links.create()
        try:
            self._data_dir = tempfile.mkdtemp(prefix="edgegrad-hosts-")
            self.redis = EmbeddedRedis(self._data_dir, bind=self.links.gateway, port=_free_port(self.links.gateway))
            self.redis.start()
            settings = Settings.from_env(**{**self.overrides, "redis_url": self.redis.url})
            self.cluster = HostCluster(settings, self.links, self.workers_per_host, log=self.log, env=self.env)
            self.cluster.start()
            self.cluster.wait_for_workers(timeout)
            missing = {self.cluster.worker_name(i) for i in range(len(self.cluster.workers))} - set(self.registered())
            if missing:
                raise RuntimeError(f"workers {sorted(missing)} did not register with Redis; see the messages above")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server and workers, then Redis; delete the namespaces, links and Redis data."""
        try:
            if self.cluster is not None:
                self.cluster.stop()
        finally:
            try:
                if self.redis is not None:
                    self.redis.stop()
            finally:
                self.links.delete()
                if self._data_dir is not None:
                    shutil.rmtree(self._data_dir, ignore_errors=True)
                    self._data_dir = None

    def __enter__(self) -> HostFleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_port(address: str) -> int:
    """A TCP port free on ``address`` right now."""
    with socket.socket() as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]
