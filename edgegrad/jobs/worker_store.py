"""The worker's side of the job store (synchronous): start a shard, stream its chunks, report it, end the job."""

from __future__ import annotations

import copy
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple, cast

import numpy as np
import redis

from edgegrad.errors import EdgegradError, NotFound
from edgegrad.jobs import scripts as jobscripts
from edgegrad.jobs.connections import sync_redis
from edgegrad.jobs.keys import Keys
from edgegrad.jobs.packing import SyncPacker
from edgegrad.model.network import Network
from edgegrad.settings import Settings
from edgegrad.v1 import job_pb2, network_pb2
from edgegrad.wire.codec import network_from_proto

from .contract import RUNNING, SUCCEEDED, stored
from .lanes import DONE
from .population_store import TopologyCache
from .record import final_state, shard_progress

__all__ = ["WorkerStore", "Started", "read_started", "EMIT_WRITTEN", "EMIT_CANCELLED", "EMIT_DELETED", "EMIT_NOT_RUNNING", "STAGE_BYTES",
           "worker_redis"]

EMIT_WRITTEN, EMIT_SKIPPED, EMIT_CANCELLED, EMIT_DELETED, EMIT_NOT_RUNNING, EMIT_FULL, EMIT_EARLY = 1, 0, -1, -2, -3, -4, -5
EMIT_UNSTAGED = -6
_PIPELINE_BYTES = 16 << 20  # flush a batch of chunks once this much is buffered
#: chunks at least this large are written with a plain SET and renamed onto the stream by EMIT (Redis
#: copies a script's arguments twice more; from this size on it takes a plain command's argument as read)
STAGE_BYTES = 32 << 10
#: seconds a staged chunk is kept if its EMIT never comes (its worker died between the two): long enough
#: for a pipeline of half a result buffer over a slow link, short next to a job's TTL
STAGED_TTL = 300
#: edges and nodes of the decoded population networks a worker keeps (about 100 bytes each)
POPULATION_CACHE_ITEMS = 4_000_000
_RUNNING = stored(RUNNING).encode()  # the state field of a running job, as HMGET returns it
_WAIT_FIRST, _WAIT_MOST = 0.005, 0.05  # seconds between looks at a job whose result buffer is full


def worker_redis(settings: Settings) -> redis.Redis:
    """The connection a worker's store (and its rq worker) should use: chunks go out uncopied, or as lists of pieces."""
    return sync_redis(settings, command_packer=SyncPacker())


class Started(NamedTuple):
    """What START returned: 'run' (a shard) or 'fold' (the shards' sums) with the spec, or 'skip' / 'gone'."""

    kind: str
    spec: bytes = b""
    attempt: int = 0
    chunks_done: int = 0
    layout: bytes = b""
    pieces: bytes = b""
    created: float = 0.0  #: the job's submission time (Unix seconds; 0 when unknown)


class WorkerStore:
    """Sync Redis access for job functions; keeps decoded networks between jobs.

    ``for_tenant(t)`` is the store of one tenant's jobs: the same connection, scripts and networks,
    and only that tenant's keys.
    """

    def __init__(self, settings: Settings, client: redis.Redis | None = None, name: str = "") -> None:
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        # a client passed in should come from worker_redis (or chunks given as pieces cannot be sent)
        self.redis = client or worker_redis(settings)
        self.name = name
        self._scripts = {n: self.redis.register_script(getattr(jobscripts, n))
                         for n in ("START", "EMIT", "SHARD_DONE", "FINISH")}
        self._scripts["DONE"] = self.redis.register_script(DONE)
        self._loaded = False
        self._networks: OrderedDict[str, Network] = OrderedDict()
        self._population = _SizedCache(POPULATION_CACHE_ITEMS)  #: decoded networks of population jobs (all tenants')
        self.topologies = TopologyCache()  #: decoded population topologies (all tenants'), by content hash
        self._tenants: dict[str, WorkerStore] = {self.keys.tenant: self}

    def for_tenant(self, tenant: str) -> WorkerStore:
        """The store of ``tenant``'s jobs (made once per tenant; InvalidInput for a bad tenant name)."""
        view = self._tenants.get(tenant)
        if view is None:
            view = copy.copy(self)
            view.keys = self.keys.for_tenant(tenant)
            self._tenants[tenant] = view
        return view

    def start(self, job_id: str, shard: int = 0) -> Started:
        """Mark a shard running (another attempt if its worker died), or learn it has nothing to do."""
        keys, args = self._start_call(job_id, shard)
        with self.redis.pipeline(transaction=False) as pipe:
            self._scripts["START"](keys=keys, args=args, client=pipe)
            pipe.get(keys[1])   # a spec kept in its own key: read here, not copied through the script
            return read_started(*pipe.execute())

    def start_in(self, pipe: redis.client.Pipeline, job_id: str, shard: int = 0) -> Callable[[list], Started | None]:
        """Put ``start``'s START (and the GET of the spec) into ``pipe`` (the worker's own start of the rq job: one
        round trip for all); returns what reads their replies there, a list from START's on (None for an error,
        such as NOSCRIPT: then ``start`` sends it again)."""
        keys, args = self._start_call(job_id, shard)
        pipe.evalsha(self._scripts["START"].sha, len(keys), *keys, *args)
        pipe.get(keys[1])
        return lambda replies: None if any(isinstance(r, Exception) for r in replies[:2]) else read_started(*replies[:2])

    @staticmethod
    def done_part(job_id: str, chunks: Iterable[tuple[int, bytes | list]], expected: int, fields: dict[str, str]
                  ) -> list[Any] | None:
        """One job's part of a DONE call (``lanes.py``: a job of one shard whose result buffer cannot fill, its
        chunks written and the job ended succeeded with ``fields``, ``expected`` chunks in all); None when a chunk
        is too large for a script argument (then ``emit`` it and ``finish``)."""
        args: list[Any] = [job_id, expected, 2 * len(fields)]
        for name, value in fields.items():
            args += [name, value]
        given: list[Any] = []
        for number, payload in chunks:
            if (len(payload) if isinstance(payload, bytes) else sum(len(p) for p in payload)) >= STAGE_BYTES:
                return None
            given += [number, payload if isinstance(payload, bytes) else b"".join(payload)]
        return [*args, len(given), *given]

    def done_call(self, parts: Iterable[list[Any]]) -> tuple[str, list[str], list[Any]]:
        """The DONE call that writes and ends the jobs of ``parts`` (``done_part``), all in one script call."""
        k, s = self.keys, self.settings
        now = time.time()
        args: list[Any] = [s.result_ttl, repr(now), repr(now + s.result_ttl), k.request(""), k.job("")]
        for part in parts:
            args += part
        return "DONE", [k.inflight, k.live], args

    def _start_call(self, job_id: str, shard: int) -> tuple[list[str], list[Any]]:
        k = self.keys
        return [k.job(job_id), k.spec(job_id), k.events(job_id)], [self.name, repr(time.time()),
                                                                     jobscripts.ANNOUNCE_WORK, shard, "1"]

    def created(self, job_id: str) -> float:
        """A job's submission time (Unix seconds), in one read; 0 when unknown (or Redis does not answer:
        this is for log lines, never worth failing a job for)."""
        try:
            created = self.redis.hget(self.keys.job(job_id), "create_time")
        except redis.RedisError:
            return 0.0
        return float(created) if created else 0.0

    def network(self, content_hash: str) -> Network:
        """The decoded network, from memory when this worker has seen it."""
        net = self._networks.get(content_hash)
        if net is None:
            blob = self.redis.get(self.keys.network(content_hash))
            if blob is None:
                raise NotFound(f"network_hash: network {content_hash!r} expired before the job ran",
                               field="network_hash")
            net = network_from_proto(network_pb2.Network.FromString(blob))
            self._networks[content_hash] = net
            while len(self._networks) > max(1, self.settings.network_cache):
                self._networks.popitem(last=False)
        self._networks.move_to_end(content_hash)
        return net

    def networks(self, hashes: Sequence[str]) -> list[Network]:
        """``network`` of many hashes (a population's): those this worker has not decoded are read with one MGET.

        Decoded population networks are kept apart from ``network``'s few (up to POPULATION_CACHE_ITEMS
        edges and nodes in all), so a fine-tuning loop's steps decode their topologies once."""
        cache = self._population
        wanted = list(dict.fromkeys(hashes))
        have = {h: net for h in wanted if (net := cache.get(h)) is not None}
        missing = [h for h in wanted if h not in have]
        if missing:
            for h, blob in zip(missing, self.redis.mget([self.keys.network(h) for h in missing])):
                if blob is None:
                    raise NotFound(f"network_hash: network {h!r} expired before the job ran", field="network_hash")
                have[h] = network_from_proto(network_pb2.Network.FromString(blob))
        for h in wanted:
            cache.put(h, have[h])
        return [have[h] for h in hashes]

    def rows(self, pieces: job_pb2.BatchPieces, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Rows [start, stop) of a batch stored in pieces: (inputs, targets or None)."""
        size = max(1, int(pieces.piece_rows))
        first, last = start // size, (stop - 1) // size
        out: list[np.ndarray | None] = []
        for name, columns in (("inputs", pieces.input_columns), ("targets", pieces.target_columns)):
            if not columns:
                out.append(None)
                continue
            keys = [self.keys.piece(pieces.upload, name, i) for i in range(first, last + 1)]
            blobs = [blob for blob in cast(list[bytes | None], self.redis.mget(keys)) if blob is not None]
            if len(blobs) != len(keys):
                raise NotFound(f"request.upload: the {name} of upload {pieces.upload!r} expired before the job ran",
                               field="request.upload")
            rows = np.frombuffer(b"".join(blobs), dtype="<f8").reshape(-1, int(columns))
            out.append(rows[start - first * size:stop - first * size])
        inputs, targets = out
        assert inputs is not None  # a batch always has input columns
        return inputs, targets

    def emit(self, job_id: str, shard: str, chunks: Iterable[tuple[int, bytes | list]], limit: int,
             then: Sequence[tuple[str, list[str], list[Any]]] = (), batch_bytes: int = _PIPELINE_BYTES) -> tuple[int, list]:
        """Write a shard's (number, chunk bytes, or the chunk's pieces as ``chunk_parts`` gives them) in
        order, waiting while the job's buffer is full.

        Returns (EMIT_WRITTEN or the code that stopped it: cancelled, deleted, not running, and the
        replies of ``then``: script calls sent in the last pipeline once every chunk is written).
        """
        pending: list[tuple[int, bytes | list]] = []
        buffered = 0
        most = max(1, limit // 2) if limit else 0  # chunks a batch may hold: half the job's buffer at most
        for number, payload in chunks:
            size = len(payload) if isinstance(payload, bytes) else sum(len(p) for p in payload)
            if size < STAGE_BYTES and not isinstance(payload, bytes):
                payload = b"".join(payload)  # a script argument
            pending.append((number, payload))
            buffered += size
            if buffered >= batch_bytes or len(pending) == most:
                code, _ = self._flush(job_id, shard, pending, limit, [])
                pending, buffered = [], 0
                if code != EMIT_WRITTEN:
                    return code, []
        return self._flush(job_id, shard, pending, limit, list(then))

    def _flush(self, job_id: str, shard: str, pending: list[tuple[int, bytes | list]], limit: int,
               then: list[tuple[str, list[str], list[Any]]]) -> tuple[int, list]:
        keys = [self.keys.job(job_id), self.keys.events(job_id)]
        ttl_ms = int(min(self.settings.job_ttl, STAGED_TTL)) * 1000  # EMIT gives a placed chunk its job's TTL
        wait, lost = _WAIT_FIRST, 0
        while True:
            args: list[Any] = [shard, limit]
            sets: list[tuple[Any, ...]] = []
            for number, payload in pending:
                if not isinstance(payload, bytes) or len(payload) >= STAGE_BYTES:
                    sets.append(("SET", self.keys.staged(job_id, shard, number), payload, "PX", ttl_ms))
                    args += [number, b""]
                else:
                    args += [number, payload]
            replies = self._run([("EMIT", keys, args), *then], sets)
            code, placed = int(replies[0][0]), int(replies[0][1])
            if code == EMIT_WRITTEN:
                return EMIT_WRITTEN, replies[1:]
            if code not in (EMIT_FULL, EMIT_EARLY, EMIT_UNSTAGED):
                return code, []
            pending = pending[placed:]  # go on from here (EMIT dropped the staged chunks it did not place)
            if code == EMIT_UNSTAGED:  # a staged chunk was lost between its SET and EMIT: write the rest again
                lost += 1
                if lost > 3:
                    raise EdgegradError("Redis dropped result chunks between their SET and EMIT (is it evicting"
                                        " keys? edgegrad needs maxmemory-policy noeviction)")
                continue
            while True:  # the client has not taken enough yet: a cheap look at the job until there is room
                time.sleep(wait)
                wait = min(_WAIT_MOST, wait * 2)
                state, written, acked = self.redis.hmget(keys[0], "state", "chunks_done", "acked")
                if state != _RUNNING or not limit or int(written or 0) - int(acked or 0) < limit:
                    break

    def shard_done(self, job_id: str, shard: int, chunks: int, rows: int, loss: str, partial: bytes,
                   group: tuple[int, int] | None = None) -> tuple[str, list[str], list[Any]]:
        """The SHARD_DONE call for a shard that wrote all its ``chunks``; ``group``: (group, its shards) of a
        population's row shard (its reply then counts the group's shards done too)."""
        k = self.keys
        more = [] if group is None else [f"g:{group[0]}", group[1]]
        return "SHARD_DONE", [k.job(job_id), k.part(job_id, shard)], [shard, chunks, rows, loss, partial,
                                                                       self.settings.job_ttl, *more]

    def finish(self, job_id: str, state: int, expected: int, fields: dict[str, str]) -> tuple[str, list, list]:
        """The FINISH call that ends a job in ``state`` (SUCCEEDED, FAILED or CANCELLED of ``contract``)."""
        k, s = self.keys, self.settings
        now = time.time()
        argv: list[Any] = [stored(state), repr(now), s.result_ttl, repr(now + s.result_ttl), k.request(""), expected]
        for name, value in fields.items():
            argv += [name, value]
        return "FINISH", [k.job(job_id), k.spec(job_id), k.events(job_id), k.inflight, k.live], argv

    def call(self, *calls: tuple[str, list[str], list[Any]], together: bool = False) -> list[Any]:
        """Run script calls in one pipeline; ``together``: as one transaction, so that a client blocked on a
        job's stream wakes once for all the calls wrote (a batch's chunks and ends), not after each."""
        return self._run(list(calls), together=together)

    def fail(self, job_id: str, state: int, fields: dict[str, str]) -> str:
        """End a job as FAILED or CANCELLED; return the state it ended in, as stored."""
        return final_state(self._run([self.finish(job_id, state, 0, fields)])[-1])

    def shard_reported(self, job_id: str, shard: int) -> tuple[bool, bool]:
        """(whether ``shard`` of a running job has reported its rows, whether every shard has): a shard
        whose worker died after reporting needs no rerun, only the fold if it was the last."""
        names = [b"state", f"s:{shard}".encode(), b"shards_done", b"shards"]
        fields = dict(zip(names, cast(list[bytes | None], self.redis.hmget(self.keys.job(job_id), names))))
        if fields[b"state"] != _RUNNING or shard_progress(fields, shard)[0] != SUCCEEDED:
            return False, False
        return True, int(fields[b"shards_done"] or 0) >= int(fields[b"shards"] or 1)

    def partials(self, job_id: str, first: int, stop: int) -> Iterator[bytes | None]:
        """Shards [first, stop)'s partial sums, read one at a time, in order."""
        return (cast(bytes | None, self.redis.get(self.keys.part(job_id, i))) for i in range(first, stop))

    def progress(self, job_id: str, fields: Sequence[str]) -> list[bytes | None]:
        """These fields of a job's hash (shards' and folds' progress), in one read."""
        return cast(list[bytes | None], self.redis.hmget(self.keys.job(job_id), list(fields)))

    def shard_shares(self, job_id: str, shards: int) -> tuple[list[bytes | None], Iterable[bytes | None]]:
        """The shards' loss shares (in order), and their partial sums read one at a time, in order."""
        shares = cast(list[bytes | None], self.redis.hmget(self.keys.job(job_id), [f"l:{i}" for i in range(shards)]))
        return shares, (cast(bytes | None, self.redis.get(self.keys.part(job_id, i))) for i in range(shards))

    def _run(self, calls: list[tuple[str, list[str], list[Any]]], before: Sequence[tuple[Any, ...]] = (),
             together: bool = False) -> list[Any]:
        """Run script calls in one pipeline by sha, after the plain commands ``before`` (their replies
        left out), without redis-py's SCRIPT EXISTS round trip.

        Scripts are loaded once; if Redis lost them (a restart), they are loaded again and the
        calls re-run, which is safe because every script (and a SET of a staged chunk) is idempotent.
        """
        for attempt in (1, 2):
            if not self._loaded:
                for script in self._scripts.values():
                    script.sha = self.redis.script_load(script.script)
                self._loaded = True
            pipe = self.redis.pipeline(transaction=together)
            for command in before:
                pipe.execute_command(*command)
            for name, keys, args in calls:
                pipe.evalsha(self._scripts[name].sha, len(keys), *keys, *args)
            try:
                return pipe.execute()[len(before):]
            except redis.exceptions.NoScriptError:
                if attempt == 2:
                    raise
                self._loaded = False
        raise AssertionError("unreachable")


class _SizedCache:
    """Decoded networks by hash, least recently used dropped first past ``limit`` edges and nodes in all."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: OrderedDict[str, Network] = OrderedDict()
        self._size = 0

    def get(self, key: str) -> Network | None:
        """The network, or None."""
        return self._items.get(key)

    def put(self, key: str, net: Network) -> None:
        """Keep (or touch) ``net``; drop the oldest while over the limit (the newest always stays)."""
        if key not in self._items:
            self._size += _size(net)
        self._items[key] = net
        self._items.move_to_end(key)
        while len(self._items) > 1 and self._size > self.limit:
            self._size -= _size(self._items.popitem(last=False)[1])


def _size(net: Network) -> int:
    """Edges and nodes of a network: what a decoded network costs a worker's memory, roughly."""
    return net.n_edges + net.n_nodes + 1


def read_started(reply: list, spec: bytes | None = None) -> Started:
    """START's reply as a ``Started`` (``spec``: the spec key's value, read beside a START told to leave it)."""
    kind = reply[0].decode()
    if kind not in ("run", "fold"):
        return Started(kind)
    return Started(kind, reply[1] or spec or b"", int(reply[2]), int(reply[3]), reply[4] or b"", reply[5] or b"",
                   float(reply[6] or 0))
