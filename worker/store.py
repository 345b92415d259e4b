"""The worker's side of the job store (synchronous): start a job, stream its chunks, finish it."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any, Iterable, NamedTuple

import redis

from edgegrad import jobscripts
from edgegrad.codec import network_from_proto
from edgegrad.errors import NotFound
from edgegrad.keys import Keys
from edgegrad.network import Network
from edgegrad.settings import Settings
from edgegrad.v1 import job_pb2, network_pb2

__all__ = ["WorkerStore", "Started", "EMIT_WRITTEN", "EMIT_CANCELLED"]

EMIT_WRITTEN, EMIT_SKIPPED, EMIT_CANCELLED, EMIT_DELETED, EMIT_NOT_RUNNING = 1, 0, -1, -2, -3
_PIPELINE_BYTES = 8 << 20  # flush a batch of chunks once this much is buffered


class Started(NamedTuple):
    """What START returned: 'run' with the spec, or 'skip' / 'gone' / 'cancel'."""

    kind: str
    spec: bytes = b""
    attempt: int = 0
    chunks_done: int = 0
    layout: bytes = b""


class WorkerStore:
    """Sync Redis access for job functions; keeps decoded networks between jobs."""

    def __init__(self, settings: Settings, client: redis.Redis | None = None, name: str = "") -> None:
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self.redis = client or redis.Redis.from_url(settings.redis_url)
        self.name = name
        self._scripts = {n: self.redis.register_script(getattr(jobscripts, n)) for n in ("START", "EMIT", "FINISH")}
        self._loaded = False
        self._networks: OrderedDict[str, Network] = OrderedDict()

    def start(self, job_id: str) -> Started:
        """Mark the job running (another attempt if it was running when its worker died)."""
        k = self.keys
        reply = self._scripts["START"](keys=[k.job(job_id), k.spec(job_id), k.events(job_id)],
                                       args=[self.name, repr(time.time()), jobscripts.ANNOUNCE_WORK])
        kind = reply[0].decode()
        if kind != "run":
            return Started(kind)
        return Started(kind, reply[1], int(reply[2]), int(reply[3]), reply[4] or b"")

    def network(self, content_hash: str) -> Network:
        """The decoded network, from memory when this worker has seen it."""
        net = self._networks.get(content_hash)
        if net is None:
            blob = self.redis.get(self.keys.network(content_hash))
            if blob is None:
                raise NotFound(f"network_hash: network {content_hash!r} expired before the job ran")
            net = network_from_proto(network_pb2.Network.FromString(blob))
            self._networks[content_hash] = net
            while len(self._networks) > max(1, self.settings.network_cache):
                self._networks.popitem(last=False)
        self._networks.move_to_end(content_hash)
        return net

    def emit_and_finish(self, job_id: str, chunks: Iterable[job_pb2.ResultChunk], expected: int,
                        fields: dict[str, str], batch_bytes: int = _PIPELINE_BYTES) -> str:
        """Write chunks (stopping at a cancel or delete), then the final event; returns the final state."""
        k = self.keys
        job_key, events = k.job(job_id), k.events(job_id)
        calls: list[tuple[str, list[str], list[Any]]] = []
        buffered = 0
        for chunk in chunks:
            payload = job_pb2.JobEvent(chunk=chunk).SerializeToString()
            calls.append(("EMIT", [job_key, events], [chunk.seq, payload]))
            buffered += len(payload)
            if buffered >= batch_bytes:
                buffered = 0
                written, calls = self._run(calls), []
                if min(written, default=EMIT_WRITTEN) < EMIT_SKIPPED:
                    break  # cancelled, deleted or no longer running: stop between chunks
        calls.append(self._finish(job_id, "3", expected, fields))
        return _state(self._run(calls)[-1])

    def fail(self, job_id: str, state: str, fields: dict[str, str]) -> str:
        """End a job as failed ("4") or cancelled ("5")."""
        return _state(self._run([self._finish(job_id, state, 0, fields)])[-1])

    def _finish(self, job_id: str, state: str, expected: int, fields: dict[str, str]) -> tuple[str, list, list]:
        k, s = self.keys, self.settings
        now = time.time()
        argv: list[Any] = [state, repr(now), s.result_ttl, repr(now + s.result_ttl), k.request(""), expected]
        for name, value in fields.items():
            argv += [name, value]
        return "FINISH", [k.job(job_id), k.spec(job_id), k.events(job_id)], argv

    def _run(self, calls: list[tuple[str, list[str], list[Any]]]) -> list[Any]:
        """Run script calls in one pipeline by sha, without redis-py's SCRIPT EXISTS round trip.

        Scripts are loaded once; if Redis lost them (a restart), they are loaded again and the
        calls re-run, which is safe because EMIT and FINISH are idempotent.
        """
        for attempt in (1, 2):
            if not self._loaded:
                for script in self._scripts.values():
                    script.sha = self.redis.script_load(script.script)
                self._loaded = True
            pipe = self.redis.pipeline(transaction=False)
            for name, keys, args in calls:
                pipe.evalsha(self._scripts[name].sha, len(keys), *keys, *args)
            try:
                return pipe.execute()
            except redis.exceptions.NoScriptError:
                if attempt == 2:
                    raise
                self._loaded = False
        raise AssertionError("unreachable")


def _state(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else ("gone" if value is None else str(value))
