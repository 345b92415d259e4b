"""The Lua scripts that change a job atomically in Redis, shared by the server and the workers.

States are stored as the numbers of ``edgegrad.v1.JobState`` (1 queued, 2 running, 3 succeeded,
4 failed, 5 cancelled). Stream entry ids encode the chunk seq: chunk ``s`` is ``s-0``; state
events after chunk ``s`` are ``s-1``, ``s-2``...; the final event is ``(last chunk + 1)-0``.
State (``k`` = ``s``) and final (``k`` = ``d``) events carry a snapshot of the job hash, so a
watcher needs no second read to report them.
"""

from __future__ import annotations

#: estimated multiply-adds (batch × edges × outputs) from which a job's start is announced on its stream
ANNOUNCE_WORK = 1 << 20

__all__ = ["ANNOUNCE_WORK", "CREATE", "START", "EMIT", "FINISH", "CANCEL", "DELETE",
           "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "FINAL_STATES"]

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = b"1", b"2", b"3", b"4", b"5"
FINAL_STATES = (SUCCEEDED, FAILED, CANCELLED)

# KEYS: job, spec, index, request (the index again when none), network
# ARGV: job_id, ttl, spec bytes, has_request ("1"/"0"), job key prefix, index cutoff (ids below it
#       are past every TTL), 2 × number of hash fields, field, value, ..., then the commands that
#       enqueue the job on rq, each as its word count followed by its words.
# Claim, record and enqueue happen together or not at all. Returns nil when created,
# {existing_job_id, its fingerprint} when the request id is taken, {'nonet'} when the network is gone.
CREATE = """
if ARGV[4] == '1' then
  local cur = redis.call('GET', KEYS[4])
  if cur then
    local fp = redis.call('HGET', ARGV[5] .. cur, 'fingerprint')
    if fp then return {cur, fp} end
  end
end
if redis.call('EXISTS', KEYS[5]) == 0 then return {'nonet'} end
if ARGV[4] == '1' then redis.call('SET', KEYS[4], ARGV[1], 'EX', ARGV[2]) end
local last = 7 + tonumber(ARGV[7])
redis.call('HSET', KEYS[1], unpack(ARGV, 8, last))
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[2])
redis.call('ZADD', KEYS[3], 0, ARGV[1])
redis.call('ZREMRANGEBYLEX', KEYS[3], '-', '(' .. ARGV[6])
local i = last + 1
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
return false
"""

# KEYS: job, spec, events.  ARGV: worker name, now, announce threshold.
# Returns {'run', spec, attempt, chunks_done, layout} or {'skip'|'gone'|'cancel'}. The "running"
# state event goes to watchers only for a retry or a job whose estimated work (field 'work') is at
# least the threshold: a quick job's stream is its state, its chunks and its final job.
START = """
local st = redis.call('HMGET', KEYS[1], 'state', 'cancel', 'chunks_done', 'attempt', 'work')
if not st[1] then return {'gone'} end
if st[1] ~= '1' and st[1] ~= '2' then return {'skip'} end
if st[2] == '1' then return {'cancel'} end
local attempt = tonumber(st[4] or '0') + 1
local done = st[3] or '0'
redis.call('HSET', KEYS[1], 'state', '2', 'attempt', attempt, 'worker', ARGV[1], 'start_time', ARGV[2])
if attempt > 1 or tonumber(st[5] or ARGV[3]) >= tonumber(ARGV[3]) then
  local sub = 1
  local last = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)[1]
  if last then
    local ms, sq = string.match(last[1], '^(%d+)-(%d+)$')
    if ms == done then sub = tonumber(sq) + 1 end
  end
  redis.call('XADD', KEYS[3], done .. '-' .. sub, 'k', 's', unpack(redis.call('HGETALL', KEYS[1])))
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[3], ttl) end
end
return {'run', redis.call('GET', KEYS[2]) or '', tostring(attempt), done, redis.call('HGET', KEYS[1], 'layout')}
"""

# KEYS: job, events.  ARGV: seq, serialized JobEvent.
# Returns 1 written, 0 already there (a retried job), -1 cancelled, -2 deleted, -3 not running.
EMIT = """
local st = redis.call('HMGET', KEYS[1], 'state', 'cancel', 'chunks_done')
if not st[1] then return -2 end
if st[2] == '1' then return -1 end
if st[1] ~= '2' then return -3 end
if tonumber(st[3] or '0') >= tonumber(ARGV[1]) then return 0 end
redis.call('XADD', KEYS[2], ARGV[1] .. '-0', 'k', 'c', 'd', ARGV[2])
redis.call('HSET', KEYS[1], 'chunks_done', ARGV[1])
if redis.call('PTTL', KEYS[2]) < 0 then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
end
return 1
"""

# KEYS: job, spec, events.  ARGV: state, end time, result ttl, expire time, request key prefix,
# chunks expected, field, value, ... (loss or error).  Ends a queued or running job; a job meant
# to succeed whose chunks were refused because of a cancel ends cancelled. Returns the final state.
_FINISH_BODY = """
local seq = tonumber(redis.call('HGET', KEYS[1], 'chunks_done') or '0') + 1
redis.call('XADD', KEYS[3], seq .. '-0', 'k', 'd', unpack(redis.call('HGETALL', KEYS[1])))
redis.call('DEL', KEYS[2])
local rid = redis.call('HGET', KEYS[1], 'request_id')
for _, key in ipairs({KEYS[1], KEYS[3]}) do redis.call('EXPIRE', key, ARGV[3]) end
if rid and rid ~= '' then redis.call('EXPIRE', ARGV[5] .. rid, ARGV[3]) end
"""

FINISH = """
local st = redis.call('HMGET', KEYS[1], 'state', 'cancel', 'chunks_done')
if not st[1] then return false end
if st[1] ~= '1' and st[1] ~= '2' then return st[1] end
local state = ARGV[1]
if state == '3' and tonumber(st[3] or '0') < tonumber(ARGV[6]) then
  if st[2] == '1' then
    state = '5'
    redis.call('HSET', KEYS[1], 'error_code', '1', 'error_message', 'cancelled by request')
  else
    state = '4'
    redis.call('HSET', KEYS[1], 'error_code', '13', 'error_message', 'result chunks missing')
  end
else
  if #ARGV >= 7 then redis.call('HSET', KEYS[1], unpack(ARGV, 7)) end
end
redis.call('HSET', KEYS[1], 'state', state, 'end_time', ARGV[2], 'expire_time', ARGV[4])
""" + _FINISH_BODY + """
return state
"""

# KEYS: job, spec, events.  ARGV: '5', now, result ttl, expire time, request key prefix.
# A queued job ends cancelled at once; a running one gets the flag its worker checks between
# chunks. Returns the state before, or nil for an unknown job.
CANCEL = """
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return false end
if st == '1' then
  redis.call('HSET', KEYS[1], 'state', '5', 'cancel', '1', 'end_time', ARGV[2], 'expire_time', ARGV[4],
             'error_code', '1', 'error_message', 'cancelled by request')
""" + _FINISH_BODY + """
elseif st == '2' then
  redis.call('HSET', KEYS[1], 'cancel', '1')
end
return st
"""

# KEYS: job, spec, events, index.  ARGV: job id, request key prefix.  Returns 1, or 0 if unknown.
DELETE = """
local exists = redis.call('EXISTS', KEYS[1])
local rid = redis.call('HGET', KEYS[1], 'request_id')
redis.call('ZREM', KEYS[4], ARGV[1])
if rid and rid ~= '' then
  local key = ARGV[2] .. rid
  if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key) end
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return exists
"""
