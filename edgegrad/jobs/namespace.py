"""Deleting a whole namespace: every key of one key prefix and one rq queue (tests, benchmarks)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import redis

from ..settings import Settings
from .connections import sync_redis
from .keys import Keys

__all__ = ["delete_namespace", "rq_job_keys"]

#: rq's own keys of one rq job, by its id (rq's naming)
_RQ_JOB_KEYS = ("rq:job:", "rq:results:")
#: rq's sets that name queues and workers
_RQ_REGISTRIES = ("rq:queues", "rq:workers")


def rq_job_keys(r: redis.Redis, job_ids: Iterable[str]) -> list[bytes]:
    """rq's keys (job hash, results) of every rq job of the jobs ``job_ids``: each shard's and the fold's.

    Found by one SCAN, not from the job records: a record expires with its result while its queued rq
    jobs may live on until their own TTL (a shard run outside rq), and then its shard count is gone.
    """
    wanted = set(job_ids)
    if not wanted:
        return []
    found = []
    for prefix in _RQ_JOB_KEYS:
        for key in r.scan_iter(match=f"{prefix}*", count=1000):
            rq_id = key[len(prefix):].decode(errors="replace")
            if rq_id in wanted or rq_id.rpartition("-")[0] in wanted:
                found.append(key)
    return found


def delete_namespace(settings: Settings) -> None:
    """Delete edgegrad's keys under ``key_prefix``, rq's keys of every rq job of the jobs in its index, and
    rq's keys of every queue and worker whose name contains ``queue``."""
    keys = Keys(settings.key_prefix)
    marker = settings.queue
    r = sync_redis(settings)
    try:
        job_ids = [m.decode() for m in cast(list[bytes], r.zrange(keys.jobs, 0, -1))]  # decode_responses is off
        found = [k for p in (keys.pattern, f"rq:*{marker}*") for k in r.scan_iter(match=p, count=1000)]
        found += rq_job_keys(r, job_ids)
        for i in range(0, len(found), 500):
            r.delete(*found[i:i + 500])
        for name in _RQ_REGISTRIES:
            stale = [m for m in r.smembers(name) if marker.encode() in m]
            if stale:
                r.srem(name, *stale)
    finally:
        r.close()
