"""Submissions in one script call: CREATE records many jobs of one tenant at once, and ``Coalescer`` gathers the
submissions a server makes at the same moment (a ``SubmitJobs`` call's items, concurrent ``SubmitJob`` calls)
into one such call.

What one job costs Redis is then its own record (the request-id claim, the record's HSET and EXPIRE, the
network check) and its share of what the call does once: the clock, the tenant's counts and limits, the
index and quota sorted sets (one multi-member ZADD each), a lane's push and wake mark.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Generic, TypeVar

__all__ = ["CREATE", "Coalescer", "MAX_CREATE_JOBS", "script_commands"]

#: most jobs one CREATE call records (a script blocks Redis while it runs; more go in further calls)
MAX_CREATE_JOBS = 256

# KEYS: the tenant's job index, inflight, live, held (see edgegrad.jobs.keys).
# ARGV: ttl, job key prefix, index cutoff (ids below it are past every TTL; '' to skip the housekeeping:
#       trimming the index, dropping expired in-flight entries, renewing the quota keys' TTL), most jobs the
#       tenant may have queued or running (0: no limit), most result bytes its jobs may hold (0: no limit), TTL
#       of the quota keys (outlives any job created until the next housekeeping), the number of jobs, then
#       for each job: its id, its request-id key ('' for none), its network key and the tenant's mark of it
#       (it registered it; or a population topology's key and mark), its spec ('': the record holds it, field
#       'spec', or the server wrote it to the job's spec key ahead of this call), its result bytes, its lane key
#       ('' for none), 2 × number of record fields, field, value, ..., the number of words of its commands, then
#       its commands (each its word count followed by its words);
#       after the jobs, for each lane a job named: its key, its wake mark's key, the id of the rq job that would
#       take from it, the number of words of the commands that enqueue that rq job, and those commands.
# Each job is created (its request id claimed, its record written, its commands run, its id onto its lane) or
# refused, in order: claim, record and enqueue happen together or not at all. Then every lane that got jobs
# gets an rq job where none is queued for it yet (``SET <wake> NX``). Returns for each job nil when created,
# {existing_job_id, its fingerprint} when its request id is taken, {'nonet'} when its network is gone (or the
# tenant never registered it), {'limit', 'jobs'|'bytes', what the tenant has now} when over a limit.
# Scores are the Redis TIME (ms) at which a job's records expire: in-flight jobs are counted from now on
# (ZCOUNT), and expired jobs are dropped (at most 1000 a call) from ``live``, the bytes held and the job index
# with the housekeeping, and before a submission over the byte limit is refused, so the limits count only jobs
# that still exist.
CREATE = """
local index_key, inflight_key, live_key, held_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local ttl, job_prefix, cutoff, max_jobs, max_bytes = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local quota_ttl, count = ARGV[6], tonumber(ARGV[7])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local expire = now + 1000 * tonumber(ttl)
local function drop_expired()
  local gone = redis.call('ZRANGEBYSCORE', live_key, '-inf', '(' .. now, 'LIMIT', 0, 1000)
  if #gone > 0 then
    local freed = 0
    for _, size in ipairs(redis.call('HMGET', held_key, unpack(gone))) do freed = freed + tonumber(size or '0') end
    redis.call('HDEL', held_key, unpack(gone))
    redis.call('ZREM', live_key, unpack(gone))
    redis.call('ZREM', index_key, unpack(gone))  -- the job index holds only jobs whose records live
    redis.call('HINCRBY', held_key, 'total', -freed)
  end
end
local dropped = cutoff ~= ''
if dropped then drop_expired() end
local running, held, added = nil, nil, 0  -- read once, when first needed; added: this call's result bytes
local ids, sizes, lanes, networks = {}, {}, {}, {}
local function run(from, to)  -- commands, each its word count then its words
  local i = from
  while i <= to do
    local n = tonumber(ARGV[i])
    redis.call(unpack(ARGV, i + 1, i + n))
    i = i + n + 1
  end
end
local function create(at, fields_end, commands_at, commands_end)
  local job_id, request_key, network_key, owned_key = ARGV[at], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3]
  local spec, result_bytes, lane = ARGV[at + 4], ARGV[at + 5], ARGV[at + 6]
  local claimed = false
  if request_key ~= '' then
    claimed = redis.call('SET', request_key, job_id, 'NX', 'EX', ttl)
    if not claimed then
      local cur = redis.call('GET', request_key)
      local fp = cur and redis.call('HGET', job_prefix .. cur, 'fingerprint')
      if fp then return {cur, fp} end
    end
  end
  local function refuse(reply)
    if claimed then redis.call('DEL', request_key) end
    return reply
  end
  local marks = network_key .. ' ' .. owned_key
  if not networks[marks] then
    if redis.call('EXISTS', network_key, owned_key) < 2 then return refuse({'nonet'}) end
    networks[marks] = true
  end
  if max_jobs > 0 then
    running = running or redis.call('ZCOUNT', inflight_key, now, '+inf')
    if running + #ids >= max_jobs then return refuse({'limit', 'jobs', tostring(running + #ids)}) end
  end
  if max_bytes > 0 then
    held = held or tonumber(redis.call('HGET', held_key, 'total') or '0')
    if held + added + tonumber(result_bytes) > max_bytes and not dropped then
      drop_expired()  -- at the limit between two housekeepings: what expired since the last one no longer counts
      dropped = true
      held = tonumber(redis.call('HGET', held_key, 'total') or '0')
    end
    if held + added + tonumber(result_bytes) > max_bytes then return refuse({'limit', 'bytes', tostring(held + added)}) end
  end
  if request_key ~= '' and not claimed then redis.call('SET', request_key, job_id, 'EX', ttl) end
  local job_key = job_prefix .. job_id
  redis.call('HSET', job_key, unpack(ARGV, at + 8, fields_end))
  redis.call('EXPIRE', job_key, ttl)
  if spec ~= '' then redis.call('SET', job_key .. ':spec', spec, 'EX', ttl) end
  ids[#ids + 1] = job_id
  sizes[#sizes + 1] = result_bytes
  added = added + tonumber(result_bytes)
  run(commands_at, commands_end)
  if lane ~= '' then
    lanes[lane] = lanes[lane] or {}
    table.insert(lanes[lane], job_id)
  end
  return false
end
local replies, at = {}, 8
for _ = 1, count do
  local fields_end = at + 7 + tonumber(ARGV[at + 7])
  local commands_end = fields_end + 1 + tonumber(ARGV[fields_end + 1])
  replies[#replies + 1] = create(at, fields_end, fields_end + 2, commands_end)
  at = commands_end + 1
end
for from = 1, #ids, 1000 do  -- the index and the tenant's counts, many members a command (unpack's limit: 1000)
  local index, scored, bytes = {}, {}, {}
  for j = from, math.min(#ids, from + 999) do
    index[#index + 1] = 0
    index[#index + 1] = ids[j]
    scored[#scored + 1] = expire
    scored[#scored + 1] = ids[j]
    bytes[#bytes + 1] = ids[j]
    bytes[#bytes + 1] = sizes[j]
  end
  redis.call('ZADD', index_key, unpack(index))
  redis.call('ZADD', inflight_key, unpack(scored))
  redis.call('ZADD', live_key, unpack(scored))
  redis.call('HSET', held_key, unpack(bytes))
end
if #ids > 0 then redis.call('HINCRBY', held_key, 'total', added) end
if cutoff ~= '' then
  redis.call('ZREMRANGEBYLEX', index_key, '-', '(' .. cutoff)
  redis.call('ZREMRANGEBYSCORE', inflight_key, '-inf', '(' .. now)
  for _, key in ipairs({inflight_key, live_key, held_key}) do redis.call('EXPIRE', key, quota_ttl) end
end
while at <= #ARGV do  -- the lanes: their jobs pushed, and an rq job enqueued where none is queued for the lane
  local lane_key, wake_key, rq_id = ARGV[at], ARGV[at + 1], ARGV[at + 2]
  local commands_end = at + 3 + tonumber(ARGV[at + 3])
  local pushed = lanes[lane_key]
  if pushed then
    for from = 1, #pushed, 1000 do redis.call('RPUSH', lane_key, unpack(pushed, from, math.min(#pushed, from + 999))) end
    if redis.call('SET', wake_key, rq_id, 'NX', 'EX', ttl) then
      redis.call('EXPIRE', lane_key, ttl)  -- the lane lives as long as its rq job may wait
      run(at + 4, commands_end)
    end
  end
  at = commands_end + 1
end
return replies
"""

def script_commands(commands: Iterable[Sequence[Any]]) -> list[Any]:
    """Redis commands as the scripts' ARGV carries them (CREATE's and TAKE's ``run``): each its word count, then its words."""
    words: list[Any] = []
    for command in commands:
        words += [len(command), *command]
    return words


T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    """Items added at the same moment (before the event loop turns) are sent together: ``send`` gets up to
    ``most`` of them and answers each, in order. No item waits on purpose: the batch goes at the loop's next turn."""

    def __init__(self, send: Callable[[list[T]], Awaitable[list[R]]], most: int = MAX_CREATE_JOBS) -> None:
        self._send, self._most = send, max(1, most)
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._tasks: set[asyncio.Task[None]] = set()  #: calls under way (kept referenced until done)

    async def add(self, item: T) -> R:
        """``send``'s answer for ``item``, sent with whatever else is added before the loop turns."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), self._most):
            task = asyncio.ensure_future(self._call(pending[start:start + self._most]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _call(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            replies = await self._send([item for item, _ in batch])
        except BaseException as exc:  # every item of the call gets the error (a cancelled caller is left alone)
            for _, future in batch:
                if future.done():
                    continue
                if isinstance(exc, asyncio.CancelledError):
                    future.cancel()
                else:
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), reply in zip(batch, replies):
            if not future.done():
                future.set_result(reply)
