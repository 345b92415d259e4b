"""Small jobs run together: which jobs wait in a lane, and the Lua that queues and takes them.

A small job (one shard, rows in its request, little work) is not an rq job of its own. The server
records it as usual and, in the same CREATE script (``creating.py``), pushes its id onto its tenant's *lane* for its
kind of engine call (dtype, loss, reduction, per-example, norms, clip_norm), enqueueing one rq job
that runs ``BATCH_FUNCTION`` only when none is queued for that lane yet (the lane's wake mark).
The worker running that rq job takes up to ``batch_max_jobs`` ids at once and starts them (``TAKE``, one
script), keeps them under the rq job's own key (its retry takes the same jobs again), enqueues another
such rq job while jobs are left, and runs what it took as one engine call. Everything else about a job (record, events,
stream, cancel, per-job attempts) is as for any other job.
"""

from __future__ import annotations

from ..settings import Settings
from ..v1 import job_pb2
from .scripts import _DROP_DATA, START_FUNCTION, _chunk_keys

__all__ = ["lane_of", "TAKE", "DONE"]


def lane_of(request: job_pb2.GradientRequest, work: int, shards: int, settings: Settings) -> str | None:
    """The lane of a job small enough to run with others of its kind, or None (it gets rq jobs of its own)."""
    if settings.batch_max_jobs <= 1 or shards != 1 or work > settings.batch_max_work or request.upload:
        return None
    clip = request.clip_norm.hex() if request.clip_norm else "0"
    return "-".join((request.dtype or "float64", request.loss or "outputs", request.reduction or "mean",
                     "rows" if request.per_example else "sums", "norms" if request.norms else "plain", clip))


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


# KEYS: the tenant's inflight and live.  ARGV: result ttl, end time, expire time, request key prefix, job key
# prefix, then for each job: its id, its chunk count, 2 × its final fields, field, value, ..., 2 × the chunks
# given, each chunk's number (1-based) and its serialized ResultChunk (seq left out), in order.
# Writes the chunks and the end of small jobs of one shard whose result buffer cannot fill (every chunk fits
# it), as EMIT then FINISH (``scripts.py``) would, one job after another, in one call: the job record is read
# once (HGETALL), the final event's snapshot is built from it, and the tenant's inflight and live are changed
# once for all. Returns for each job {EMIT's code, FINISH's reply}: 1 written, -1 cancelled, -2 deleted, -3 not
# running, -5 a chunk missing before one given (then the job ends failed, "result chunks missing", as FINISH
# ends a job whose chunks are missing); the state the job ended in, 'was N' for one that had ended already, or
# nil for one that is gone.
DONE = """
local inflight_key, live_key = KEYS[1], KEYS[2]
local result_ttl, end_time, expire_time, request_prefix, job_prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local function done(job_id, expected, fields_at, fields_end, chunks_at, chunks_end)
  local job_key = job_prefix .. job_id
  local events_key = job_key .. ':events'
  local all = redis.call('HGETALL', job_key)
  if #all == 0 then return {-2, false} end
  local f = {}
  for j = 1, #all, 2 do f[all[j]] = all[j + 1] end
  if f.state ~= '1' and f.state ~= '2' then return {f.cancel == '1' and -1 or -3, 'was ' .. f.state} end
  local names, values = {}, {}  -- the fields to set, in order
  local function put(name, value)
    if values[name] == nil then names[#names + 1] = name end
    values[name] = value
  end
  local code, first = 1, tonumber(f.chunks_done or '0')
  local seq = first
  if f.state == '2' then
    local s1, s2, s3, s4 = string.match(f['s:0'] or '2|1|0|', '^(%d)|(%d+)|(%d+)|(.*)$')
    local written = tonumber(s3)
    for j = chunks_at, chunks_end, 2 do
      local k = tonumber(ARGV[j])
      if k > written then
        if k ~= written + 1 then code = -5 break end
        seq = seq + 1
        redis.call('XADD', events_key, seq .. '-0', 'k', 'c', 'd', ARGV[j + 1])
        written = k
      end
    end
    if seq > first then
      put('chunks_done', tostring(seq))
      put('s:0', s1 .. '|' .. s2 .. '|' .. written .. '|' .. s4)
    end
  else
    code = -3
  end
  local state = '3'
  if seq < expected then
    state = '4'
    put('error_code', '13')
    put('error_message', 'result chunks missing')
  else
    for j = fields_at, fields_end, 2 do put(ARGV[j], ARGV[j + 1]) end
  end
  put('state', state)
  put('end_time', end_time)
  put('expire_time', expire_time)
  if f.spec then put('spec', '') end  -- the request kept in the record (a small one) is no longer needed
  local sets, snapshot = {}, {}
  for _, name in ipairs(names) do
    sets[#sets + 1] = name
    sets[#sets + 1] = values[name]
  end
  redis.call('HSET', job_key, unpack(sets))
  for j = 1, #all, 2 do  -- the record as it is now, as HGETALL would read it (less the request)
    if all[j] ~= 'spec' then
      snapshot[#snapshot + 1] = all[j]
      snapshot[#snapshot + 1] = values[all[j]] or all[j + 1]
    end
  end
  for _, name in ipairs(names) do
    if f[name] == nil and name ~= 'spec' then
      snapshot[#snapshot + 1] = name
      snapshot[#snapshot + 1] = values[name]
    end
  end
  redis.call('XADD', events_key, (seq + 1) .. '-0', 'k', 'd', unpack(snapshot))
  local st = {f.state, f.cancel, tostring(seq), f.request_id, f.upload, f.upload_pieces, f.shards, f.summed, f.id,
              f.staged, f.acked}  -- as FINISH reads the record, for the clean-up it shares
  if not f.spec then redis.call('DEL', job_key .. ':spec') end
""" + _DROP_DATA + """
  redis.call('EXPIRE', job_key, result_ttl)
  redis.call('EXPIRE', events_key, result_ttl)
""" + _chunk_keys("EXPIRE") + """
  if st[4] and st[4] ~= '' then redis.call('EXPIRE', request_prefix .. st[4], result_ttl) end
  return {code, state}
end
local replies, ended = {}, {}
local i = 6
while i <= #ARGV do
  local nf = tonumber(ARGV[i + 2])
  local nc = tonumber(ARGV[i + 3 + nf])
  local chunks_at = i + 4 + nf
  replies[#replies + 1] = done(ARGV[i], tonumber(ARGV[i + 1]), i + 3, i + 2 + nf, chunks_at, chunks_at + nc - 1)
  if replies[#replies][2] and string.sub(replies[#replies][2], 1, 3) ~= 'was' then ended[#ended + 1] = ARGV[i] end
  i = chunks_at + nc
end
if #ended > 0 then  -- no longer in flight; their results are held until the new expiry
  redis.call('ZREM', inflight_key, unpack(ended))
  local clock = redis.call('TIME')
  local ends = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000) + 1000 * tonumber(result_ttl)
  local scored = {}
  for _, id in ipairs(ended) do
    scored[#scored + 1] = ends
    scored[#scored + 1] = id
  end
  redis.call('ZADD', live_key, 'XX', unpack(scored))
end
return replies
"""
