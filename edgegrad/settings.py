"""Every setting and limit of the service in one place, read from environment variables."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidInput

__all__ = ["Settings", "ENV_NAMES", "KERNELS"]

MiB = 1 << 20
#: values of the ``kernel`` setting (EDGEGRAD_KERNEL)
KERNELS = ("auto", "numpy", "compiled")


def _env(name: str) -> Any:
    return field(metadata={"env": name})


@dataclass(frozen=True)
class Settings:
    """Service configuration; ``Settings.from_env()`` reads ``EDGEGRAD_*`` and ``REDIS_URL``."""

    redis_url: str = "redis://127.0.0.1:6379/0"  #: user and password in it; rediss:// for TLS
    redis_ca_file: str = ""                 #: PEM file of the CA that signed Redis's TLS certificate (rediss://)
    key_prefix: str = "edgegrad"            #: prefix of every edgegrad key in Redis
    queue: str = "edgegrad"                 #: rq queue name
    listen: str = "[::]:50051"              #: server address
    result_ttl: int = 3600                  #: seconds a finished job and its chunks are kept
    job_ttl: int = 86400                    #: seconds an unfinished job (and its request_id) is kept
    network_ttl: int = 7 * 86400            #: seconds a registered network is kept after last use
    max_message_bytes: int = 512 * MiB      #: largest gRPC message either way
    chunk_bytes: int = 4 * MiB              #: largest result chunk message (4 MiB: within any gRPC client's default limit)
    max_nodes: int = 10_000_000
    max_edges: int = 50_000_000
    max_batch: int = 1_000_000
    max_result_bytes: int = 4096 * MiB      #: largest result a job may produce
    max_upload_bytes: int = 8192 * MiB      #: largest upload (a batch or a population sent in pieces)
    heartbeat_seconds: float = 5.0          #: watch-stream heartbeat period
    shutdown_grace_seconds: float = 5.0     #: time streams get to end on SIGTERM
    auth_token: str = ""                    #: bearer token clients must send ("" = no auth)
    auth_token_file: str = ""               #: file of accepted tokens, ``TENANT TOKEN`` a line
    tls_cert: str = ""                      #: PEM certificate chain (with tls_key: serve TLS)
    tls_key: str = ""                       #: PEM private key
    worker_ttl: int = 20                    #: rq worker key TTL; idle workers wake every ttl-15 s
    job_heartbeat_ttl: int = 15             #: a running job is abandoned this long after its last heartbeat
    maintenance_interval: int = 10          #: seconds between rq registry clean-ups (retries abandoned jobs)
    job_timeout: int = 3600                 #: seconds a job may run
    job_retries: int = 3                    #: times an abandoned job is retried
    network_cache: int = 8                  #: decoded networks a worker / server keeps in memory
    max_streams: int = 1000                 #: WatchJob/Compute streams one server keeps open at once
    result_buffer_bytes: int = 256 * MiB    #: result bytes kept in Redis per job until the client acknowledges them
    worker_memory_bytes: int = 2048 * MiB   #: engine working memory one shard may need on a worker
    shard_seconds: float = 1.0              #: engine time a shard aims at when the client sets no shard_rows
    max_shards: int = 4096                  #: most shards one job is split into
    batch_max_jobs: int = 64                #: most small jobs a worker runs together in one engine call (1: no batching)
    batch_max_work: int = 1 << 20           #: a job is small (batched) up to this estimated work (rows x edges x outputs)
    batch_delay_ms: float = 0.0             #: a worker's wait for a batch to fill once it has taken its first jobs
    redis_connections: int = 64             #: a server's pool of Redis connections for short commands
    page_size: int = 100                    #: ListJobs page when the client asks for none
    max_page_size: int = 1000               #: largest ListJobs page
    threads: int = 0                        #: engine threads (and BLAS's, when set); 0: every core it may use
    slab_bytes: int = 128 * MiB             #: engine working memory of one slab of rows
    plan_cache: int = 8                     #: compiled plans the engine keeps (LRU)
    kernel: str = "auto"                    #: engine kernels: auto, numpy or compiled (numba; see engine/kernel.py)
    tenant_max_jobs: int = 100_000          #: jobs one tenant may have queued or running at once (0: no limit)
    tenant_max_result_bytes: int = 65536 * MiB  #: result bytes one tenant's jobs may hold (0: no limit)
    metrics_port: str = ""                  #: Prometheus /metrics port ("" off, 0 a free one); `up`: server, then workers
    metrics_host: str = "0.0.0.0"           #: address the /metrics endpoint listens on
    log_format: str = "text"                #: service log lines: text, or json (one object a line)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then environment variables, then ``overrides`` (non-None values)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = ENV_NAMES[f.name]
            if name in environ:
                values[f.name] = _parse(environ[name], f.type, name)
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = dataclasses.replace(cls(), **values)
        if settings.kernel.strip().lower() not in KERNELS:
            raise InvalidInput(f"{ENV_NAMES['kernel']}: expected one of {', '.join(KERNELS)}, got {settings.kernel!r}")
        if settings.redis_ca_file and not settings.redis_url.startswith("rediss://"):
            raise InvalidInput(f"{ENV_NAMES['redis_ca_file']}: only meaningful with TLS to Redis"
                               " (a rediss:// REDIS_URL)")
        return settings

    @staticmethod
    def read(name: str, environ: Mapping[str, str] | None = None) -> Any:
        """One setting from the environment, parsed, without building the rest; None when unset or blank.

        For knobs the engine reads on every call (``threads``, ``slab_bytes``, ``plan_cache``).
        """
        var = ENV_NAMES[name]
        text = (os.environ if environ is None else environ).get(var, "").strip()
        return _parse(text, _TYPES[name], var) if text else None

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


#: field name -> environment variable
ENV_NAMES: dict[str, str] = {f.name: ("REDIS_URL" if f.name == "redis_url" else f"EDGEGRAD_{f.name.upper()}")
                             for f in dataclasses.fields(Settings)}
_TYPES: dict[str, Any] = {f.name: f.type for f in dataclasses.fields(Settings)}


def _parse(text: str, kind: Any, name: str) -> Any:
    kind = kind if isinstance(kind, str) else kind.__name__
    try:
        if kind == "int":
            value: Any = int(text)
        elif kind == "float":
            value = float(text)
        else:
            return text
    except ValueError:
        raise InvalidInput(f"{name}: expected {'an integer' if kind == 'int' else 'a number'}, got {text!r}") from None
    if value < 0:
        raise InvalidInput(f"{name}: must not be negative, got {text!r}")
    return value
