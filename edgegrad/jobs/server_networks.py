"""The server's side of registered networks: stored once under their content hash, marked per tenant,
their metadata (what a batch is checked against) kept in memory."""

from __future__ import annotations

import json
from collections import OrderedDict

import redis.asyncio as aioredis

from ..errors import NotFound
from ..settings import Settings
from ..v1 import network_pb2
from .keys import Keys

__all__ = ["NetworkMeta", "NetworkRegistry", "no_network"]

#: (tenant, network) pairs known to be registered by the tenant
OWNED_KEPT = 4096


def no_network(content_hash: str) -> NotFound:
    """The answer for a network hash this tenant has not registered (or that expired)."""
    return NotFound(f"network_hash: no network {content_hash!r} is registered (or it expired); register it first",
                    field="network_hash")


class NetworkMeta:
    """What a batch is validated against: a registered network's ids and sizes (a ``NetworkSizes``)."""

    __slots__ = ("hash", "inputs", "outputs", "n_nodes", "n_edges", "widest_level")

    def __init__(self, content_hash: str, inputs: list[str], outputs: list[str], n_nodes: int, n_edges: int,
                 widest_level: int) -> None:
        self.hash = content_hash
        self.inputs, self.outputs = tuple(inputs), tuple(outputs)
        self.n_nodes, self.n_edges = n_nodes, n_edges
        self.widest_level = widest_level  #: nodes in the widest level

    @property
    def n_inputs(self) -> int:
        """Number of inputs (I)."""
        return len(self.inputs)

    @property
    def n_outputs(self) -> int:
        """Number of outputs (K)."""
        return len(self.outputs)

    def to_json(self) -> str:
        """Compact JSON for Redis."""
        return json.dumps({"inputs": self.inputs, "outputs": self.outputs, "nodes": self.n_nodes,
                           "edges": self.n_edges, "widest": self.widest_level}, separators=(",", ":"))

    @classmethod
    def from_json(cls, content_hash: str, text: bytes) -> NetworkMeta:
        """Parse what ``to_json`` wrote."""
        d = json.loads(text)
        return cls(content_hash, d["inputs"], d["outputs"], d["nodes"], d["edges"], d["widest"])

    def info(self) -> network_pb2.NetworkInfo:
        """The NetworkInfo proto."""
        return network_pb2.NetworkInfo(hash=self.hash, inputs=self.n_inputs, nodes=self.n_nodes,
                                       edges=self.n_edges, outputs=self.n_outputs)


class NetworkRegistry:
    """The network half of the server's ``JobStore``: registering networks and reading their metadata."""

    settings: Settings
    keys: Keys
    redis: aioredis.Redis
    _meta: OrderedDict[str, NetworkMeta]
    _owned: OrderedDict[str, None]

    async def put_network(self, meta: NetworkMeta, blob: bytes) -> None:
        """Store a serialized network and its metadata under its content hash, registered by this tenant."""
        ttl, k = self.settings.network_ttl, self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(k.network(meta.hash), blob, ex=ttl)
            pipe.set(k.network_meta(meta.hash), meta.to_json(), ex=ttl)
            pipe.set(k.network_owned(meta.hash), "1", ex=ttl)
            await pipe.execute()
        self._remember(meta)

    async def put_networks(self, items: list[tuple[NetworkMeta, bytes]]) -> None:
        """``put_network`` of many networks in one round trip."""
        ttl, k = self.settings.network_ttl, self.keys
        if not items:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for meta, blob in items:
                pipe.set(k.network(meta.hash), blob, ex=ttl)
                pipe.set(k.network_meta(meta.hash), meta.to_json(), ex=ttl)
                pipe.set(k.network_owned(meta.hash), "1", ex=ttl)
            await pipe.execute()
        for meta, _ in items:
            self._remember(meta)

    async def network_metas(self, hashes: list[str]) -> list[NetworkMeta | None]:
        """``network_meta`` of many networks (None for one unknown to this tenant), in one round trip at most."""
        found: dict[str, NetworkMeta | None] = {}
        for h in hashes:
            meta = self._meta.get(h) if self.keys.network_owned(h) in self._owned else None
            if meta is not None:
                found[h] = meta
        missing = [h for h in dict.fromkeys(hashes) if h not in found]
        if missing:
            async with self.redis.pipeline(transaction=False) as pipe:
                for h in missing:
                    pipe.get(self.keys.network_meta(h))
                    pipe.exists(self.keys.network_owned(h))
                replies = await pipe.execute()
            for i, h in enumerate(missing):
                text, owned = replies[2 * i], replies[2 * i + 1]
                if text is None or not owned:
                    self._forget(h, gone=text is None)
                    found[h] = None
                else:
                    found[h] = NetworkMeta.from_json(h, text)
                    self._remember(found[h])  # type: ignore[arg-type]
        return [found[h] for h in hashes]

    async def network_meta(self, content_hash: str, fresh: bool = False) -> NetworkMeta:
        """The metadata of a network this tenant registered (from memory unless ``fresh``); NotFound when
        unknown, expired or registered by other tenants only."""
        mark = self.keys.network_owned(content_hash)
        meta = None if fresh or mark not in self._owned else self._meta.get(content_hash)
        if meta is not None:
            self._meta.move_to_end(content_hash)
            return meta
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(self.keys.network_meta(content_hash))
            pipe.exists(mark)
            text, owned = await pipe.execute()
        if text is None or not owned:
            self._forget(content_hash, gone=text is None)
            raise no_network(content_hash)
        meta = NetworkMeta.from_json(content_hash, text)
        self._remember(meta)
        return meta

    def _remember(self, meta: NetworkMeta) -> None:
        self._meta[meta.hash] = meta
        self._meta.move_to_end(meta.hash)
        while len(self._meta) > max(1, self.settings.network_cache):
            self._meta.popitem(last=False)
        mark = self.keys.network_owned(meta.hash)
        self._owned[mark] = None
        self._owned.move_to_end(mark)
        while len(self._owned) > OWNED_KEPT:
            self._owned.popitem(last=False)

    def _forget(self, content_hash: str, gone: bool) -> None:
        """Drop what memory says of a network for this tenant (for everyone when it is ``gone``)."""
        self._owned.pop(self.keys.network_owned(content_hash), None)
        if gone:
            self._meta.pop(content_hash, None)
