"""The server's side of the job store: job records, rq enqueueing, event streams (networks: ``server_networks``).

Everything here is asyncio (redis.asyncio) so one server process serves many open streams.
A submission is one Redis round trip (claim, record and enqueue in one script); a watch blocks in XREAD.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, cast

import redis
import redis.asyncio as aioredis

from .. import joblog
from ..errors import AlreadyExists, EdgegradError, NotFound, ResourceExhausted
from ..settings import ENV_NAMES, Settings
from ..v1 import job_pb2
from . import scripts as jobscripts
from .bulk import BulkReader
from .connections import async_blocking_pool, async_redis
from .contract import CANCELLED, QUEUED, RUNNING, stored
from .creating import CREATE, Coalescer, script_commands
from .keys import Keys
from .record import final_state, id_prefix_at, job_from_fields
from .rqenqueue import RqEnqueuer
from .server_networks import NetworkMeta, NetworkRegistry, no_network
from .stream import CHUNK, StreamCursor, StreamEntry, stream_entry

__all__ = ["JobStore", "NetworkMeta"]


def _no_job(job_id: str) -> NotFound:
    """The answer for a job this tenant cannot see (unknown, deleted or expired)."""
    return NotFound(f"name: no job jobs/{job_id} (unknown, deleted or expired)", field="name")


#: seconds between two trims of the job index
INDEX_TRIM_SECONDS = 1.0
#: a job's serialized request up to this size is kept in its record (field 'spec') rather than a key of its own
RECORD_SPEC_BYTES = 4096
#: seconds between two refreshes of a used network's TTL
NETWORK_REFRESH_SECONDS = 60.0
#: networks whose last refresh is remembered
REFRESHED_KEPT = 4096


class JobStore(NetworkRegistry):
    """Async access to networks and jobs in Redis for the gRPC front end.

    ``for_tenant(t)`` is the store of one tenant: the same connections and caches, and only that
    tenant's keys, so nothing it does can reach another tenant's jobs, request ids or uploads.
    """

    def __init__(self, settings: Settings, client: aioredis.Redis | None = None) -> None:
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        # Short commands share a bounded pool (``redis_connections``) and wait for a free connection
        # under load. Each open
        # watch holds a connection of its own pool in a blocking XREAD for up to a heartbeat
        # period, so those sockets must wait longer than that.
        timeout = settings.heartbeat_seconds + 10.0
        self.redis = client or aioredis.Redis(connection_pool=async_blocking_pool(
            settings, max_connections=settings.redis_connections, timeout=timeout, socket_timeout=timeout))
        self.streams = client or async_redis(settings, max_connections=settings.max_streams, socket_timeout=timeout)
        self._rq = RqEnqueuer(settings)
        self._bulk = BulkReader(settings, socket_timeout=timeout)
        self._scripts = {name: self.redis.register_script(getattr(jobscripts, name))
                         for name in ("CANCEL", "DELETE", "ACK")}
        self._scripts["CREATE"] = self.redis.register_script(CREATE)
        self._creates: Coalescer[tuple[list[Any], str | None, list[tuple[Any, ...]]], Any] = Coalescer(self._create)
        self._meta: OrderedDict[str, NetworkMeta] = OrderedDict()
        self._refreshed: OrderedDict[str, float] = OrderedDict()  #: network mark -> when its TTL was last refreshed
        self._owned: OrderedDict[str, None] = OrderedDict()  #: network marks known to exist
        self._trimmed = float("-inf")  #: when the job index was last trimmed
        self._tenants: dict[str, JobStore] = {self.keys.tenant: self}

    def for_tenant(self, tenant: str) -> JobStore:
        """The store of ``tenant`` (made once per tenant; InvalidInput for a bad tenant name)."""
        view = self._tenants.get(tenant)
        if view is None:
            view = copy.copy(self)
            view.keys, view._trimmed = self.keys.for_tenant(tenant), float("-inf")
            view._creates = Coalescer(view._create)
            self._tenants[tenant] = view
        return view

    async def close(self) -> None:
        """Close connections."""
        self._rq.close()
        self._bulk.close()
        await self.redis.aclose(close_connection_pool=True)  # a pool passed in is not closed by default
        if self.streams is not self.redis:
            await self.streams.aclose()

    # ----------------------------------------------------------------- jobs
    async def create_job(self, job_id: str, spec: bytes, fields: dict[str, Any], request_id: str,
                         fingerprint: str, network_hash: str, shards: int = 1,
                         extra: Sequence[tuple[Any, ...]] = (), result_bytes: int = 0,
                         networks: Sequence[str] = (), stored: tuple[str, str] | None = None,
                         lane: str | None = None, before: Sequence[tuple[Any, ...]] = ()) -> tuple[str, bool]:
        """Record and enqueue a job (one rq job per shard, and the ``extra`` commands) counted against
        the tenant's limits; with a taken request_id, return that job instead. ``networks``: more networks
        the job uses (a population's), whose TTLs are refreshed with ``network_hash``'s. ``stored``: instead of
        ``network_hash``'s, the (key, tenant mark) that must exist for the job to be made (a population's topology).
        A small job given a ``lane`` waits there instead, to run with others (see ``jobs/lanes.py``). ``before``:
        commands sent in the same round trip just ahead of the CREATE (they run whether or not the job is made;
        a population's new topology, which ``stored`` then finds).

        Returns (job id, created). A request_id reused for a different request: AlreadyExists; the
        tenant at a limit: ResourceExhausted.
        """
        k = self.keys
        apart: list[tuple[Any, ...]] = []
        if len(spec) <= RECORD_SPEC_BYTES:  # a small request lives in the record: no key of its own to write and read
            fields, spec = {**fields, "spec": spec}, b""
        else:  # a large one in its own key, by a plain SET ahead of the CREATE (a script would copy it twice)
            apart, spec = [("SET", k.spec(job_id), spec, "EX", self.settings.job_ttl)], b""
        part: list[Any] = [job_id, k.request(request_id) if request_id else "",
                           *(stored or (k.network(network_hash), k.network_owned(network_hash))), spec, result_bytes,
                           k.lane(lane) if lane is not None else "", 2 * len(fields)]
        for name, value in fields.items():
            part += [name, value]
        commands = [*extra, *self._refresh_commands([network_hash, *networks] if stored is None else [*networks])]
        if lane is None:
            commands += self._rq.commands(job_id, shards, k.tenant)
        words = script_commands(commands)
        found = await self._creates.add((part + [len(words), *words], lane, [*before, *apart]))
        if found and apart:  # not made: its request's key goes (its record was never written)
            await self.redis.delete(k.spec(job_id))
        if found == [b"nonet"] and stored is not None:
            raise NotFound(f"networks_hash: no population topology {network_hash!r} is stored (or it expired);"
                           " send the networks again", field="networks_hash")
        if found == [b"nonet"]:
            self._forget(network_hash, gone=False)
            raise no_network(network_hash)
        if found and found[0] == b"limit":
            raise self._over_limit(found[1].decode(), int(found[2]), result_bytes)
        if found:
            existing, their_fp = found[0].decode(), found[1].decode()
            if their_fp != fingerprint:
                raise AlreadyExists(f"request_id: {request_id!r} was already used for a different request"
                                    f" (jobs/{existing})", field="request_id")
            return existing, False
        return job_id, True

    async def _create(self, jobs: list[tuple[list[Any], str | None, list[tuple[Any, ...]]]]) -> list[Any]:
        """One CREATE call (``creating.py``) for jobs of this tenant: each its part of the call, its lane and the
        commands to run before the call (in its round trip)."""
        k, s = self.keys, self.settings
        # ids start with their creation time: anything older than both TTLs together has expired
        # (trimmed from the index at most once a second, not on every call, with the other
        # housekeeping; the quota keys then live on until every job created before the next has expired)
        cutoff = ""
        if time.monotonic() - self._trimmed >= INDEX_TRIM_SECONDS:
            self._trimmed = time.monotonic()
            cutoff = id_prefix_at(time.time() - s.job_ttl - s.result_ttl)
        quota_ttl = s.job_ttl + s.result_ttl + int(2 * INDEX_TRIM_SECONDS) + 1
        args: list[Any] = [s.job_ttl, k.job(""), cutoff, s.tenant_max_jobs, s.tenant_max_result_bytes, quota_ttl,
                           len(jobs)]
        for part, _, _ in jobs:
            args += part
        for lane in dict.fromkeys(lane for _, lane, _ in jobs if lane is not None):
            rq_id, enqueue = self._rq.batch_commands(lane, k.tenant)
            words = script_commands(enqueue)
            args += [k.lane(lane), k.lane_wake(lane), rq_id, len(words), *words]
        before = [command for _, _, commands in jobs for command in commands]
        if not before:
            return cast(list[Any], await self._scripts["CREATE"](keys=[k.jobs, *k.quota], args=args))
        script, keys = self._scripts["CREATE"], [k.jobs, *k.quota]
        for attempt in (1, 2):  # by sha, without redis-py's SCRIPT EXISTS round trip ahead of a pipeline's script
            async with self.redis.pipeline(transaction=False) as pipe:
                for command in before:
                    pipe.execute_command(*command)
                pipe.evalsha(script.sha, len(keys), *keys, *args)
                try:
                    return cast(list[Any], (await pipe.execute())[-1])
                except redis.exceptions.NoScriptError:  # Redis lost it (a restart): the CREATE did not run
                    if attempt == 2:
                        raise
                    script.sha = await self.redis.script_load(script.script)
        raise AssertionError("unreachable")

    def _refresh_commands(self, hashes: list[str]) -> list[tuple[Any, ...]]:
        """The commands that renew the TTL of networks in use, each at most once a minute."""
        k, s, now = self.keys, self.settings, time.monotonic()
        commands: list[tuple[Any, ...]] = []
        for content_hash in dict.fromkeys(hashes):
            mark = k.network_owned(content_hash)
            if now - self._refreshed.get(mark, float("-inf")) <= NETWORK_REFRESH_SECONDS:
                continue
            self._refreshed[mark] = now  # a network in use lives on, refreshed at most once a minute
            self._refreshed.move_to_end(mark)
            commands += [("EXPIRE", k.network(content_hash), s.network_ttl),
                         ("EXPIRE", k.network_meta(content_hash), s.network_ttl), ("EXPIRE", mark, s.network_ttl)]
        while len(self._refreshed) > REFRESHED_KEPT:
            self._refreshed.popitem(last=False)
        return commands

    def _over_limit(self, which: str, now: int, result_bytes: int) -> ResourceExhausted:
        """The error of a submission over one of the tenant's limits."""
        s, tenant = self.settings, self.keys.tenant
        if which == "jobs":
            return ResourceExhausted(f"tenant {tenant!r}: {now} jobs queued or running, the limit of"
                                     f" {ENV_NAMES['tenant_max_jobs']}={s.tenant_max_jobs}; submit again when some"
                                     " have ended")
        return ResourceExhausted(f"tenant {tenant!r}: its jobs hold {now} result bytes; {result_bytes} more would"
                                 f" pass {ENV_NAMES['tenant_max_result_bytes']}={s.tenant_max_result_bytes}; delete"
                                 " finished jobs (or wait for them to expire)")

    async def job_for_request(self, request_id: str) -> str | None:
        """The id of the job that claimed ``request_id``, or None."""
        found = cast(bytes | None, await self.redis.get(self.keys.request(request_id)))  # decode_responses is off
        return found.decode() if found else None

    async def job_fields(self, job_id: str) -> dict[bytes, bytes]:
        """The job's hash; NotFound when unknown or expired."""
        fields = await self.redis.hgetall(self.keys.job(job_id))
        if not fields or b"state" not in fields:
            raise _no_job(job_id)
        return cast(dict[bytes, bytes], fields)  # decode_responses is off

    async def get_job(self, job_id: str) -> job_pb2.Job:
        """The Job proto; NotFound when unknown or expired."""
        return job_from_fields(await self.job_fields(job_id))

    async def list_jobs(self, page_size: int, page_token: str) -> tuple[list[job_pb2.Job], str]:
        """Jobs newest first, ``page_size`` at a time; the token is the last id of the page before."""
        start = f"({page_token}" if page_token else "+"
        jobs: list[job_pb2.Job] = []
        while len(jobs) < page_size:
            want = page_size - len(jobs)
            ids = cast(list[bytes], await self.redis.zrevrangebylex(self.keys.jobs, start, "-", start=0, num=want))
            if not ids:
                return jobs, ""
            async with self.redis.pipeline(transaction=False) as pipe:
                for job_id in ids:
                    pipe.hgetall(self.keys.job(job_id.decode()))
                records = await pipe.execute()
            stale = [job_id for job_id, rec in zip(ids, records) if not rec]
            if stale:
                await self.redis.zrem(self.keys.jobs, *stale)
            jobs += [job_from_fields(rec) for rec in records if rec]
            start = f"({ids[-1].decode()}"
            if len(ids) < want:
                return jobs, ""
        return jobs, jobs[-1].name.split("/", 1)[1] if jobs else ""

    async def cancel_job(self, job_id: str) -> job_pb2.Job:
        """Cancel a queued job now, or flag a running one; NotFound when unknown."""
        k, s = self.keys, self.settings
        now = time.time()
        before = await self._scripts["CANCEL"](
            keys=[k.job(job_id), k.spec(job_id), k.events(job_id), k.inflight, k.live],
            args=[stored(CANCELLED), repr(now), s.result_ttl, repr(now + s.result_ttl), k.request("")])
        if before is None:
            raise _no_job(job_id)
        job = await self.get_job(job_id)
        if final_state(before) in (stored(QUEUED), stored(RUNNING)):
            joblog.job_cancelled(job, k.tenant)
        return job

    async def delete_job(self, job_id: str) -> None:
        """Delete a job, its chunks and its request_id claim (a running one stops at its next chunk)."""
        k = self.keys
        found = await self._scripts["DELETE"](keys=[*k.job_keys(job_id), k.jobs, *k.quota],
                                              args=[job_id, k.request("")])
        if not found:
            raise _no_job(job_id)

    async def ack_job(self, job_id: str, seq: int) -> None:
        """Drop the job's chunks up to ``seq`` (the client holds them) so its workers can write more."""
        k = self.keys
        if await self._scripts["ACK"](keys=[k.job(job_id), k.events(job_id)], args=[int(seq)]) is None:
            raise _no_job(job_id)

    # -------------------------------------------------------------- uploads
    async def put_piece(self, upload_id: str, field: str, index: int, data: bytes) -> None:
        """Store one piece of an upload (it lives as long as an unfinished job)."""
        await self.redis.set(self.keys.piece(upload_id, field, index), data, ex=self.settings.job_ttl)

    async def read_pieces(self, upload_id: str, field: str, count: int) -> bytes:
        """The ``count`` pieces of an upload's ``field``, joined (NotFound when one expired)."""
        keys = [self.keys.piece(upload_id, field, i) for i in range(count)]
        blobs = cast(list[bytes | None], await self.redis.mget(keys) if keys else [])  # decode_responses is off
        if any(blob is None for blob in blobs):
            raise NotFound(f"population.upload: the {field} of upload {upload_id!r} expired", field="population.upload")
        return b"".join(cast(list[bytes], blobs))

    async def drop_pieces(self, upload_id: str, counts: dict[str, int]) -> None:
        """Delete the pieces of an upload that did not complete."""
        keys = [self.keys.piece(upload_id, name, i) for name, n in counts.items() for i in range(n)]
        if keys:
            await self.redis.delete(*keys)

    async def put_upload(self, upload_id: str, meta: dict[str, str]) -> None:
        """Record an upload's sizes once its pieces are stored."""
        key = self.keys.upload(upload_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            # redis-py types the mapping as Mapping[<union of field types>, ...]: a dict[str, str] does not
            # match its invariant key type, though every str field is one redis-py takes
            pipe.hset(key, mapping=meta)  # type: ignore[arg-type]
            pipe.expire(key, self.settings.job_ttl)
            await pipe.execute()

    async def upload(self, upload_id: str) -> dict[str, str]:
        """An upload's record; NotFound when unknown, used by a job already, or expired."""
        fields = cast(dict[bytes, bytes], await self.redis.hgetall(self.keys.upload(upload_id)))
        if not fields:
            raise NotFound(f"request.upload: no upload {upload_id!r} (unknown, already used by a job, or expired)",
                           field="request.upload")
        return {key.decode(): value.decode() for key, value in fields.items()}

    async def read_events(self, job_id: str, last_id: str, block_ms: int, count: int = 8) -> list[StreamEntry]:
        """The job's stream entries after ``last_id``, blocking up to ``block_ms`` (empty list on timeout)."""
        reply: Any = await self.streams.xread({self.keys.events(job_id): last_id}, count=count, block=block_ms)
        return [stream_entry(entry_id, fields) for entry_id, fields in reply[0][1]] if reply else []

    async def read_many(self, last: dict[str, str], block_ms: int, count: int = 8) -> list[tuple[str, list[StreamEntry]]]:
        """(job id, its entries) of every job whose stream has entries after ``last[job id]``, in one read
        blocking up to ``block_ms`` (empty list on timeout)."""
        streams = {self.keys.events(job_id): job_id for job_id in last}
        reply: Any = await self.streams.xread({key: last[job_id] for key, job_id in streams.items()},
                                         count=count, block=block_ms)
        return [(streams[key.decode() if isinstance(key, bytes) else key],
                 [stream_entry(entry_id, fields) for entry_id, fields in entries]) for key, entries in reply or []]

    async def jobs_fields(self, job_ids: list[str]) -> list[dict[bytes, bytes]]:
        """The hashes of jobs (an empty one for a job unknown or expired), in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(self.keys.job(job_id))
            return await pipe.execute()

    async def with_chunk_data(self, job_id: str, entries: list[StreamEntry]) -> list[StreamEntry]:
        """``entries`` with the data of their large chunks, which are kept in keys of their own, read in (data
        None: that key is gone, acknowledged, deleted or expired)."""
        large = [e.seq for e in entries if e.kind == CHUNK and e.data is None]
        if not large:
            return entries
        data = dict(zip(large, await self.chunk_data(job_id, large)))
        return [e._replace(data=data[e.seq]) if e.kind == CHUNK and e.data is None else e for e in entries]

    async def lost_chunk(self, job_id: str, cursor: StreamCursor, seq: int) -> EdgegradError:
        """Why chunk ``seq``'s data is gone: the job was deleted or expired (NotFound), or the client's
        acknowledgements dropped it while the watch at ``cursor`` read (OutOfRange)."""
        if await self.job_state(job_id) is None:
            return NotFound(f"name: job jobs/{job_id} was deleted or expired", field="name")
        return cursor.dropped(seq)

    async def chunk_data(self, job_id: str, seqs: list[int]) -> list[bytearray | None]:
        """The data of large chunks, whose stream entries carry none (None: acknowledged, deleted or expired),
        read in a thread with one copy (``bulk.BulkReader``)."""
        return await asyncio.to_thread(self._bulk.get, [self.keys.chunk(job_id, seq) for seq in seqs])

    async def job_state(self, job_id: str) -> tuple[job_pb2.JobState, int] | None:
        """(state, chunks_done), or None when the job is gone."""
        return (await self.job_states([job_id]))[0]

    async def job_states(self, job_ids: list[str]) -> list[tuple[job_pb2.JobState, int] | None]:
        """(state, chunks_done) of each job (None for one that is gone), in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hmget(self.keys.job(job_id), "state", "chunks_done")
            states = await pipe.execute()
        return [None if state is None else (cast(job_pb2.JobState, int(state)), int(done or 0))
                for state, done in states]
