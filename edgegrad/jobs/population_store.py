"""Population topologies in Redis: stored once per content hash (shared, as networks are) with a mark per
tenant, read back by the service (to check a fine-tuning step's values) and by workers (to run shards).

Both sides keep decoded topologies in memory by content hash (``TopologyCache``): the same hash always
names the same content, so a fine-tuning loop reads and decodes its topology once per process.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, cast

from ..errors import NotFound
from ..model.population import PopulationColumns
from ..wire.columns import topology_from_blob

if TYPE_CHECKING:
    from .server_store import JobStore
    from .worker_store import WorkerStore

__all__ = ["TopologyCache", "TOPOLOGY_CACHE_ITEMS", "topology_commands", "topology_stored",
           "load_topology", "refresh_topology",
           "forget_topology",
           "worker_topology", "server_topologies"]

#: edges and nodes of decoded topologies a worker keeps (about 40 bytes each); the service keeps half as many
TOPOLOGY_CACHE_ITEMS = 2_000_000
#: seconds between two renewals of a topology's TTL by one server
_REFRESH_SECONDS = 60.0


class TopologyCache:
    """Decoded topologies by content hash, least recently used dropped first past ``limit`` edges and nodes."""

    def __init__(self, limit: int = TOPOLOGY_CACHE_ITEMS) -> None:
        self.limit = limit
        self._items: OrderedDict[str, PopulationColumns] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, digest: str) -> PopulationColumns | None:
        """The topology, or None."""
        with self._lock:
            found = self._items.get(digest)
            if found is not None:
                self._items.move_to_end(digest)
            return found

    def put(self, digest: str, cols: PopulationColumns) -> None:
        """Keep ``cols`` (the newest always stays, whatever its size)."""
        with self._lock:
            if digest not in self._items:
                self._size += _size(cols)
            self._items[digest] = cols
            self._items.move_to_end(digest)
            while len(self._items) > 1 and self._size > self.limit:
                self._size -= _size(self._items.popitem(last=False)[1])


def _size(cols: PopulationColumns) -> int:
    return int(cols.src.size + cols.codes.size + len(cols)) + 1


#: the service's decoded topologies (one process serves every tenant; a hash names the same content for all)
server_topologies = TopologyCache(TOPOLOGY_CACHE_ITEMS // 2)
_refreshed: OrderedDict[str, float] = OrderedDict()
_owned: OrderedDict[str, None] = OrderedDict()  #: tenants' marks this process saw exist (each checked again by CREATE)
_KEPT = 4096


def _keep(table: OrderedDict, mark: str, value: Any) -> None:
    table[mark] = value
    table.move_to_end(mark)
    while len(table) > _KEPT:
        table.popitem(last=False)


def topology_commands(store: JobStore, digest: str, blob: bytes) -> list[tuple[Any, ...]]:
    """The commands storing a checked topology for the store's tenant (sent with the job's CREATE, before it)."""
    ttl, k = store.settings.network_ttl, store.keys
    return [("SET", k.population(digest), blob, "EX", ttl), ("SET", k.population_owned(digest), "1", "EX", ttl)]


def topology_stored(store: JobStore, digest: str, cols: PopulationColumns) -> None:
    """After ``topology_commands`` ran: keep the topology decoded, its tenant's mark seen and just renewed."""
    k = store.keys
    _keep(_refreshed, k.population_owned(digest), time.monotonic())
    _keep(_owned, k.population_owned(digest), None)
    server_topologies.put(digest, cols)


async def load_topology(store: JobStore, digest: str) -> PopulationColumns:
    """A stored topology the tenant sent (decoded from memory when this process has it, its tenant's mark read
    unless seen; CREATE checks both again when the job is made); NotFound when unknown to the tenant or expired."""
    k = store.keys
    mark = k.population_owned(digest)
    found = server_topologies.get(digest)
    if found is not None and mark in _owned:
        return found
    async with store.redis.pipeline(transaction=False) as pipe:
        if found is None:
            pipe.get(k.population(digest))
        pipe.exists(mark)
        replies = await pipe.execute()
    blob, owned = (None, replies[0]) if found is not None else replies
    if not owned or (found is None and blob is None):
        _owned.pop(mark, None)
        raise _no_topology(digest)
    if found is None:
        found = topology_from_blob(cast(bytes, blob))  # read, and not None: checked just above
        server_topologies.put(digest, found)
    _keep(_owned, mark, None)
    return found


def forget_topology(store: JobStore, digest: str) -> None:
    """The tenant's mark is gone (a job could not be made with it): read it again next time."""
    _owned.pop(store.keys.population_owned(digest), None)
    _refreshed.pop(store.keys.population_owned(digest), None)


def refresh_topology(store: JobStore, digest: str) -> list[tuple[Any, ...]]:
    """Commands renewing a topology's TTL (and the tenant's mark) while jobs use it, at most once a minute."""
    k, ttl, now = store.keys, store.settings.network_ttl, time.monotonic()
    mark = k.population_owned(digest)
    if now - _refreshed.get(mark, float("-inf")) <= _REFRESH_SECONDS:
        return []
    _keep(_refreshed, mark, now)
    return [("EXPIRE", k.population(digest), ttl), ("EXPIRE", mark, ttl)]


def worker_topology(store: WorkerStore, digest: str) -> PopulationColumns:
    """A job's topology for a worker: from its memory, else read (one GET) and decoded without checks."""
    cache: TopologyCache = store.topologies
    found = cache.get(digest)
    if found is None:
        blob = cast(bytes | None, store.redis.get(store.keys.population(digest)))  # decode_responses is off
        if blob is None:
            raise NotFound(f"networks_hash: population topology {digest!r} expired before the job ran",
                           field="networks_hash")
        found = topology_from_blob(blob)
        cache.put(digest, found)
    return found


def _no_topology(digest: str) -> NotFound:
    return NotFound(f"networks_hash: no population topology {digest!r} is stored for this tenant (or it expired);"
                    " send the networks again", field="networks_hash")
