"""Worker names: unique per process start, and a dead worker's leftover registration never blocks.

rq refuses to start a worker whose name is registered and not marked dead. ``host.pid`` alone is
not unique: a container restarted after a crash is ``<container id>.1`` again while the killed
process's registration lives on for ``worker_ttl + 60`` seconds, and the restarted worker would
exit at once, over and over.
"""

from __future__ import annotations

import os
import secrets
import socket
from datetime import datetime, timezone

from rq import Worker
from rq.worker import BaseWorker

__all__ = ["default_name", "stale_reason", "clear_stale_registration", "NameInUse"]


class NameInUse(Exception):
    """A live worker of the same name is registered."""


def default_name() -> str:
    """``<hostname>.<pid>.<8 random hex digits>``: new for every process start."""
    return f"{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(4)}"


def _pid_running(pid: int) -> bool:
    """Whether a process of this id runs in our pid namespace."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def stale_reason(registered: BaseWorker, worker_ttl: int) -> str | None:
    """Why ``registered`` (a worker found in Redis) cannot be alive, or None if it may be.

    Dead for sure: it was on this host with our own pid (we are that process id now, as a
    restarted container's pid 1 is) or with a pid that no longer runs here; or it has not
    heartbeated for ``worker_ttl`` seconds (a live rq worker beats at least that often).
    """
    if registered.hostname == socket.gethostname() and registered.pid is not None:
        if registered.pid == os.getpid():
            return f"it had this host and process id ({registered.pid}), so its process is gone"
        if not _pid_running(registered.pid):
            return f"its process {registered.pid} on this host is gone"
    beat = registered.last_heartbeat
    if beat is not None:
        age = (datetime.now(timezone.utc) - beat.replace(tzinfo=beat.tzinfo or timezone.utc)).total_seconds()
        if age > worker_ttl:
            return f"its last heartbeat was {age:.0f} s ago (worker TTL {worker_ttl} s)"
    return None


def clear_stale_registration(worker: BaseWorker) -> str | None:
    """Before ``worker`` registers: mark a dead namesake's leftover registration dead.

    Returns why one was cleared (None if there was none); raises NameInUse when a namesake may be
    alive (two live workers must not share a name).
    """
    connection = worker.connection
    if not connection.exists(worker.key) or connection.hexists(worker.key, "death"):
        return None
    registered = Worker.find_by_key(worker.key, connection=connection, serializer=worker.serializer)
    if registered is None:
        return None
    reason = stale_reason(registered, worker.worker_ttl)
    if reason is None:
        raise NameInUse(f"a live worker named {worker.name!r} is registered (host {registered.hostname}, pid "
                        f"{registered.pid}); give every worker its own --name, or leave --name out")
    registered.register_death()
    return reason
