"""Small jobs run together: which jobs wait in a lane, and the Lua that queues and takes them.

A small job (one shard, rows in its request, little work) is not an rq job of its own. The server
records it as usual and, in the same CREATE script, pushes its id onto its tenant's *lane* for its
kind of engine call (dtype, loss, reduction, per-example, norms, clip_norm), enqueueing one rq job
that runs ``BATCH_FUNCTION`` only when none is queued for that lane yet (the lane's wake mark).
The worker running that rq job takes up to ``batch_max_jobs`` ids at once and starts them (``TAKE``, one
script), keeps them under the rq job's own key (its retry takes the same jobs again), enqueues another
such rq job while jobs are left, and runs what it took as one engine call. Everything else about a job (record, events,
stream, cancel, per-job attempts) is as for any other job.
"""

from __future__ import annotations

from typing import Any

from ..settings import Settings
from ..v1 import job_pb2
from .scripts import START_FUNCTION

__all__ = ["lane_of", "lane_commands", "TAKE"]


def lane_of(request: job_pb2.GradientRequest, work: int, shards: int, settings: Settings) -> str | None:
    """The lane of a job small enough to run with others of its kind, or None (it gets rq jobs of its own)."""
    if settings.batch_max_jobs <= 1 or shards != 1 or work > settings.batch_max_work or request.upload:
        return None
    clip = request.clip_norm.hex() if request.clip_norm else "0"
    return "-".join((request.dtype or "float64", request.loss or "outputs", request.reduction or "mean",
                     "rows" if request.per_example else "sums", "norms" if request.norms else "plain", clip))


def lane_commands(lane_key: str, wake_key: str, job_id: str, ttl: int, rq_id: str,
                  enqueue: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """CREATE's commands for a small job: onto its lane, and (guarded: where no rq job is queued for the lane)
    the lane's TTL and its rq job."""
    return [("RPUSH", lane_key, job_id), ("GUARD", "SET", wake_key, rq_id, "NX", "EX", ttl),
            ("EXPIRE", lane_key, ttl), *enqueue]


# KEYS: lane, wake mark, the batch's key.  ARGV: most jobs to take, TTL of the batch's key, the job
# key prefix, then START's worker name, now and announce threshold, then the commands that enqueue
# the next rq job of the lane (word count, words, ...).
# The batch's key already holding ids: this is a retry of the rq job (its worker died), and it takes
# the same jobs again. Otherwise it takes up to ARGV[1] ids from the lane's head; jobs left behind get
# the next rq job (the wake mark stays set); an empty lane drops the mark, so the next submission
# enqueues one. Then each job taken is started (START, shard 0). Returns {ids, START's reply for each}.
TAKE = START_FUNCTION + """
local lane_key, wake_key, batch_key = KEYS[1], KEYS[2], KEYS[3]
local most, ttl, job_prefix = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local worker, now, announce_work = ARGV[4], ARGV[5], ARGV[6]
local taken = redis.call('LRANGE', batch_key, 0, -1)
if #taken == 0 then
  taken = redis.call('LPOP', lane_key, most) or {}
  if #taken > 0 then
    redis.call('RPUSH', batch_key, unpack(taken))
    redis.call('EXPIRE', batch_key, ttl)
  end
  if redis.call('LLEN', lane_key) > 0 then  -- the lane lives as long as its next rq job may wait
    redis.call('EXPIRE', wake_key, ttl)
    redis.call('EXPIRE', lane_key, ttl)
    local i = 7
    while i <= #ARGV do
      local n = tonumber(ARGV[i])
      redis.call(unpack(ARGV, i + 1, i + n))
      i = i + n + 1
    end
  else
    redis.call('DEL', wake_key)
  end
end
local started = {}
for i, id in ipairs(taken) do
  local job_key = job_prefix .. id
  started[i] = start(job_key, job_key .. ':spec', job_key .. ':events', worker, now, announce_work, '0')
end
return {taken, started}
"""
