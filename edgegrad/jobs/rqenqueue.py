"""rq's own enqueue commands for a job's shards, recorded to run inside the CREATE script."""

from __future__ import annotations

import re
import time
from typing import Any

from rq import Queue
from rq.serializers import JSONSerializer

from ..settings import Settings
from .connections import sync_redis
from .contract import BATCH_FUNCTION, JOB_FUNCTION
from .record import new_job_id, rq_job_id, rq_job_options

__all__ = ["RqEnqueuer", "QUEUE_NOTE_SECONDS", "batch_job_id"]

#: seconds between two SADDs of the queue to rq's set of queues (idempotent; rq's tools list queues from it)
QUEUE_NOTE_SECONDS = 60.0


def batch_job_id(queue: str) -> str:
    """A new id for an rq job of a lane: ``<id>-b-<queue>`` (rq's characters only), so the queue's name finds it."""
    return rq_job_id(new_job_id(), "b-" + re.sub(r"[^A-Za-z0-9_-]", "_", queue))


class RqEnqueuer:
    """Records the commands rq's own ``enqueue_many`` issues, to replay them on the async client.

    rq is synchronous; rather than re-implementing its job format, we let rq write into a
    never-executed redis-py pipeline and run the recorded commands inside the CREATE script, so a
    job is claimed, recorded and enqueued atomically in one round trip. (rq 3.0 has no call that
    gives its commands without a pipeline: every enqueue primitive writes to one.)
    """

    def __init__(self, settings: Settings) -> None:
        self._sync = sync_redis(settings)
        self._queue = Queue(settings.queue, connection=self._sync, serializer=JSONSerializer)
        self._settings = settings
        self._queue_noted = float("-inf")  #: when the queue was last added to rq's set of queues

    def commands(self, job_id: str, shards: int, tenant: str) -> list[tuple[Any, ...]]:
        """The Redis commands that enqueue ``run_gradient_job(job_id, shard, tenant)`` for every shard on the rq queue."""
        s = self._settings
        pipe = self._sync.pipeline(transaction=False)
        options = rq_job_options(s)
        # each shard its own rq job: any worker takes any shard, retried alone
        self._queue.enqueue_many([Queue.prepare_data(JOB_FUNCTION, args=(job_id, shard, tenant),
                                                     job_id=rq_job_id(job_id, shard), **options)
                                  for shard in range(shards)], pipeline=pipe)
        stack = [args for args, _ in pipe.command_stack]
        pipe.reset()
        return self._trimmed(stack)

    def batch_commands(self, lane: str, tenant: str) -> tuple[str, list[tuple[Any, ...]]]:
        """(rq job id, the commands that enqueue it): one rq job running ``run_job_batch(lane, tenant)``."""
        rq_id = batch_job_id(self._settings.queue)
        pipe = self._sync.pipeline(transaction=False)
        self._queue.enqueue_many([Queue.prepare_data(BATCH_FUNCTION, args=(lane, tenant), job_id=rq_id,
                                                     **rq_job_options(self._settings))], pipeline=pipe)
        stack = [args for args, _ in pipe.command_stack]
        pipe.reset()
        return rq_id, self._trimmed(stack)

    def _trimmed(self, stack: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """rq's commands less those that change nothing for our jobs: the EXPIRE of dependency keys
        (our jobs have no dependencies, so those keys never exist), the queue's SADD to rq's set of
        queues more than once a minute (it is there already); an HSET of the job hash right after
        another joins it (the same fields, one command)."""
        out: list[tuple[Any, ...]] = []
        moment = time.monotonic()
        for words in stack:
            name = str(words[0]).upper()
            key = words[1] if len(words) > 1 else ""
            key = key.decode() if isinstance(key, bytes) else str(key)
            if name == "EXPIRE" and key.endswith((":dependents", ":dependencies")):
                continue
            if name == "SADD" and key.endswith("rq:queues"):
                if moment - self._queue_noted < QUEUE_NOTE_SECONDS:
                    continue
                self._queue_noted = moment
            if name == "HSET" and out and str(out[-1][0]).upper() == "HSET" and out[-1][1] == words[1]:
                out[-1] = (*out[-1], *words[2:])
                continue
            out.append(words)
        return out

    def close(self) -> None:
        """Close the sync connection (used once, for rq's server-version probe)."""
        self._sync.close()
