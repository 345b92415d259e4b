"""Deleting a whole namespace: every key of one key prefix and one rq queue (tests, benchmarks)."""

from __future__ import annotations

from ..settings import Settings
from .connections import sync_redis
from .keys import Keys
from .record import FOLD_SHARD, rq_job_id

__all__ = ["delete_namespace"]

#: rq's own keys of one rq job, by its id (rq's naming)
_RQ_JOB_KEYS = ("rq:job:{}", "rq:results:{}")
#: rq's sets that name queues and workers
_RQ_REGISTRIES = ("rq:queues", "rq:workers")


def delete_namespace(settings: Settings) -> None:
    """Delete edgegrad's keys under ``key_prefix``, rq's keys of every shard of the jobs in its index, and
    rq's keys of every queue and worker whose name contains ``queue``."""
    keys = Keys(settings.key_prefix)
    marker = settings.queue
    r = sync_redis(settings)
    try:
        job_ids = [m.decode() for m in r.zrange(keys.jobs, 0, -1)]
        with r.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hget(keys.job(job_id), "shards")
            shard_counts = pipe.execute()
        rq_ids = [rq_job_id(j, i) for j, n in zip(job_ids, shard_counts) for i in [*range(int(n or 1)), FOLD_SHARD]]
        found = [k for p in (keys.pattern, f"rq:*{marker}*") for k in r.scan_iter(match=p, count=1000)]
        found += [name.format(rq_id) for rq_id in [*job_ids, *rq_ids] for name in _RQ_JOB_KEYS]
        for i in range(0, len(found), 500):
            r.delete(*found[i:i + 500])
        for name in _RQ_REGISTRIES:
            stale = [m for m in r.smembers(name) if marker.encode() in m]
            if stale:
                r.srem(name, *stale)
    finally:
        r.close()
