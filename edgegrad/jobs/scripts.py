"""The Lua scripts that change a job atomically in Redis, shared by the server and the workers.

States are stored as the numbers of ``edgegrad.v1.JobState`` (1 queued, 2 running, 3 succeeded,
4 failed, 5 cancelled; named in ``contract.py``). Stream entry ids encode the chunk seq: chunk ``s`` is ``s-0``; state
events after chunk ``s`` are ``s-1``, ``s-2``...; the final event is ``(last chunk + 1)-0``.
State (``k`` = ``s``) and final (``k`` = ``d``) events carry a snapshot of the job hash, so a
watcher needs no second read to report them.
"""

from __future__ import annotations

from .creating import CREATE as _CREATE

#: estimated multiply-adds (batch × edges × outputs) from which a job's start is announced on its stream
ANNOUNCE_WORK = 1 << 20

__all__ = ["ANNOUNCE_WORK", "CREATE", "START", "START_FUNCTION", "EMIT", "SHARD_DONE", "ACK", "FINISH", "CANCEL", "DELETE"]

# CREATE, which records jobs (many of one tenant in one call), is in ``creating.py``.
CREATE = _CREATE

# A shard's progress is one field of the job hash, ``s:<index>`` = "state|attempt|chunks|worker"
# (state as above, chunks it has written); the fold of a loss-mode job's shards is ``s:r``.

# KEYS: job, spec, events.  ARGV: worker name, now, announce threshold, shard index, and '1' when the caller
# reads a spec kept in its own key itself (a GET beside the call: no copy of megabytes through Lua).
# Returns {'run', spec ('' where read apart), attempt, chunks written, layout, pieces, create_time} for a shard to run,
# {'fold', ...the same} when every shard is done but the job is
# not (the worker that was folding them died), or {'skip'|'gone'}. The "running" state
# event goes to watchers when the job starts (if its estimated work, field 'work', is at least
# the threshold) and when a shard is retried.
START_FUNCTION = """
local function start(job_key, spec_key, events_key, worker, now, announce_work, shard_index, spec_apart)
local shard = 's:' .. shard_index
local st = redis.call('HMGET', job_key, 'state', 'cancel', 'work', shard, 'shards', 'shards_done', 'attempt',
                      'layout', 'pieces', 's:r', 'chunks_done', 'ev', 'create_time', 'spec')
if not st[1] then return {'gone'} end
if st[1] ~= '1' and st[1] ~= '2' then return {'skip'} end
local sstate, sattempt, schunks = string.match(st[4] or '1|0|0|', '^(%d)|(%d+)|(%d+)|')
local kind = 'run'
if sstate == '3' then
  if tonumber(st[6] or '0') < tonumber(st[5] or '1') then return {'skip'} end
  kind = 'fold'
  shard = 's:r'
  sstate, sattempt, schunks = string.match(st[10] or '1|0|0|', '^(%d)|(%d+)|(%d+)|')
end
local attempt = tonumber(sattempt) + 1
local sets = {shard, '2|' .. attempt .. '|' .. schunks .. '|' .. worker, 'worker', worker}
if attempt > tonumber(st[7] or '0') then
  sets[#sets + 1] = 'attempt'
  sets[#sets + 1] = attempt
end
local announce = attempt > 1
if st[1] == '1' then
  sets[#sets + 1] = 'state'
  sets[#sets + 1] = '2'
  sets[#sets + 1] = 'start_time'
  sets[#sets + 1] = now
  announce = announce or tonumber(st[3] or announce_work) >= tonumber(announce_work)
end
redis.call('HSET', job_key, unpack(sets))
if announce then
  -- state events after chunk `done` are done-1, done-2...: the last one used is kept in 'ev'
  -- ("done-sub"), since acknowledged chunks may have been trimmed with the events among them
  local done = st[11] or '0'
  local at, used = string.match(st[12] or '', '^(%d+)-(%d+)$')
  local sub = (at == done) and tonumber(used) + 1 or 1
  redis.call('HSET', job_key, 'ev', done .. '-' .. sub)
  redis.call('XADD', events_key, done .. '-' .. sub, 'k', 's', unpack(redis.call('HGETALL', job_key)))
  local ttl = redis.call('PTTL', job_key)
  if ttl > 0 then redis.call('PEXPIRE', events_key, ttl) end
end
local spec = st[14] or (not spec_apart and redis.call('GET', spec_key)) or ''
return {kind, spec, tostring(attempt), schunks, st[8] or '', st[9] or '', st[13] or '0'}
end
"""
START = START_FUNCTION + """
return start(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5] == '1')
"""

# KEYS: job, events.  ARGV: shard field ('s:<i>' or 's:r'), most chunks the job may hold
# unacknowledged (0: no limit), then for each chunk in order: its number in its shard (1-based)
# and its serialized ResultChunk (seq left out: it is the chunk's place on the job's stream, put
# in by the server that relays it), or '' for a large chunk the worker wrote beforehand with a plain
# SET to ``<job>:staged:<shard field>:<number>`` (a script's arguments are copied twice on their way
# into a stream; a key is renamed, not copied). A staged chunk becomes ``<job>:chunk:<seq>`` and its
# stream entry carries no data. Returns {code, placed}: how many of the given chunks are now
# on the stream (written now or by an earlier attempt), and 1 when all are, else why it stopped:
# -1 cancelled, -2 deleted, -3 not running, -4 the buffer is full (wait for the client's AckJob),
# -5 an earlier chunk of the shard is missing, -6 a staged chunk is missing (write it again).
# The staged chunks of the call that are not placed are dropped (the worker writes them again when
# it retries), so staged data lives only between a worker's SETs and its EMIT in one pipeline; a
# staged key whose EMIT never ran (its worker killed in between) expires after STAGED_TTL seconds.
# A placed chunk gets the job's TTL.
EMIT = """
local job_key, events_key = KEYS[1], KEYS[2]
local shard_field, limit = ARGV[1], tonumber(ARGV[2])
local FIRST = 3  -- the chunks: ARGV[FIRST], ARGV[FIRST + 1] the first one's number and bytes, and so on
local staged = job_key .. ':staged:' .. shard_field .. ':'
local function drop(from)
  for i = from, #ARGV, 2 do
    if ARGV[i + 1] == '' then redis.call('DEL', staged .. ARGV[i]) end
  end
end
local st = redis.call('HMGET', job_key, 'state', 'cancel', 'chunks_done', shard_field, 'acked')
if not st[1] then drop(FIRST) return {-2, 0} end
if st[2] == '1' then drop(FIRST) return {-1, 0} end
if st[1] ~= '2' then drop(FIRST) return {-3, 0} end
local s1, s2, s3, s4 = string.match(st[4] or '2|1|0|', '^(%d)|(%d+)|(%d+)|(.*)$')
local written = tonumber(s3)
local first = tonumber(st[3] or '0')
local seq = first
local acked = tonumber(st[5] or '0')
local placed, code, renamed = 0, 1, false
local ttl = -1
local i = FIRST
while i <= #ARGV do
  local number, payload = ARGV[i], ARGV[i + 1]
  local k = tonumber(number)
  if k > written then
    if k ~= written + 1 then code = -5 break end
    if limit > 0 and seq - acked >= limit then code = -4 break end
    if payload == '' then
      if redis.call('EXISTS', staged .. number) == 0 then code = -6 break end
      if not renamed then ttl, renamed = redis.call('PTTL', job_key), true end
      seq = seq + 1
      local chunk_key = job_key .. ':chunk:' .. seq
      redis.call('RENAME', staged .. number, chunk_key)
      if ttl > 0 then
        redis.call('PEXPIRE', chunk_key, ttl)
      else
        redis.call('PERSIST', chunk_key)  -- not the staged key's short TTL
      end
      redis.call('XADD', events_key, seq .. '-0', 'k', 'c')
    else
      seq = seq + 1
      redis.call('XADD', events_key, seq .. '-0', 'k', 'c', 'd', payload)
    end
    written = k
  elseif payload == '' then
    redis.call('DEL', staged .. number)  -- an earlier attempt placed this chunk already
  end
  placed = placed + 1
  i = i + 2
end
if code ~= 1 then drop(i) end  -- Redis holds no staged chunk while the worker waits: it writes them again
if seq > first then
  local sets = {'chunks_done', seq, shard_field, s1 .. '|' .. s2 .. '|' .. written .. '|' .. s4}
  if renamed then
    sets[#sets + 1] = 'staged'  -- FINISH, CANCEL and DELETE look after the job's chunk keys
    sets[#sets + 1] = '1'
  end
  redis.call('HSET', job_key, unpack(sets))
  if first == 0 then
    if ttl < 0 then ttl = redis.call('PTTL', job_key) end
    if ttl > 0 then redis.call('PEXPIRE', events_key, ttl) end
  end
end
return {code, placed}
"""

# KEYS: job, part.  ARGV: shard index, its chunk count, its rows, loss share ('' in output mode),
# partial sums ('' unless loss mode without per_example and more than one shard), part ttl, and for a
# population's row shard: its group's counter field ('g:<group>') and the group's number of shards (the rows
# count once, when the group's last shard reports).
# Returns {shards done, shards} after this one (this shard counted once however often it is
# reported; with a group, {shards done, shards, the group's shards done}), or {-1} when the job is no
# longer running, {-2} when chunks of the shard are missing.
SHARD_DONE = """
local job_key, part_key = KEYS[1], KEYS[2]
local shard_index, chunks, rows, loss_share, partial, part_ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local group, group_shards = ARGV[7] or '', tonumber(ARGV[8] or '0')
local shard = 's:' .. shard_index
local st = redis.call('HMGET', job_key, 'state', shard, 'shards_done', 'shards')
if st[1] ~= '2' then return {-1} end
local s1, s2, s3, s4 = string.match(st[2] or '2|1|0|', '^(%d)|(%d+)|(%d+)|(.*)$')
if s1 == '3' then return {tonumber(st[3]), tonumber(st[4])} end
if tonumber(s3) < tonumber(chunks) then return {-2} end
if loss_share ~= '' then redis.call('HSET', job_key, 'l:' .. shard_index, loss_share) end
if partial ~= '' then redis.call('SET', part_key, partial, 'EX', part_ttl) end
redis.call('HSET', job_key, shard, '3|' .. s2 .. '|' .. s3 .. '|' .. s4)
local group_done = nil
if group ~= '' then
  group_done = redis.call('HINCRBY', job_key, group, 1)
  if group_done < group_shards then rows = 0 end
end
redis.call('HINCRBY', job_key, 'rows_done', rows)
local done = redis.call('HINCRBY', job_key, 'shards_done', 1)
if group_done then return {done, tonumber(st[4]), group_done} end
return {done, tonumber(st[4])}
"""

# KEYS: job, events.  ARGV: seq the client holds.  Drops the stream's chunks up to seq (and their
# chunk keys) so workers may write more; returns the seq acknowledged before, or nil for a job that
# does not exist.
ACK = """
local job_key, events_key = KEYS[1], KEYS[2]
local held_seq = tonumber(ARGV[1])
local st = redis.call('HMGET', job_key, 'state', 'acked', 'chunks_done', 'staged')
if not st[1] then return false end
local acked = tonumber(st[2] or '0')
local seq = math.min(held_seq, tonumber(st[3] or '0'))
if seq > acked then
  redis.call('XTRIM', events_key, 'MINID', (seq + 1) .. '-0')
  redis.call('HSET', job_key, 'acked', seq)
  if st[4] == '1' then
    for s = acked + 1, seq do redis.call('DEL', job_key .. ':chunk:' .. s) end
  end
end
return acked
"""

# What FINISH, CANCEL and DELETE read of the job first (after naming their KEYS and ARGV).
_READ_FOR_FINISH = """
local st = redis.call('HMGET', job_key, 'state', 'cancel', 'chunks_done', 'request_id', 'upload', 'upload_pieces',
                      'shards', 'summed', 'id', 'staged', 'acked', 'spec')
"""

def _chunk_keys(command: str) -> str:
    """Lua that runs ``command`` ('EXPIRE' to ``result_ttl``, or 'DEL') on the chunk keys of the job's
    unacknowledged chunks (see EMIT); needs ``st`` as _READ_FOR_FINISH reads it."""
    return f"""
if st[10] == '1' then
  for s = tonumber(st[11] or '0') + 1, tonumber(st[3] or '0') do
    redis.call('{command}', job_key .. ':chunk:' .. s{", result_ttl" if command == "EXPIRE" else ""})
  end
end
"""

# Drops a job's batch pieces and partial sums; needs ``st`` as _READ_FOR_FINISH reads it.
_DROP_DATA = """
if st[5] and st[5] ~= '' then
  for i = 0, tonumber(st[6] or '0') - 1 do
    redis.call('DEL', st[5] .. ':inputs:' .. i, st[5] .. ':targets:' .. i, st[5] .. ':inputs_packed:' .. i,
               st[5] .. ':targets_packed:' .. i, st[5] .. ':weights:' .. i, st[5] .. ':biases:' .. i,
               st[5] .. ':networks:' .. i)
  end
  redis.call('DEL', st[5])
end
if st[8] == '1' and tonumber(st[7] or '1') > 1 then
  for i = 0, tonumber(st[7]) - 1 do redis.call('DEL', job_key .. ':part:' .. i) end
end
"""

# The KEYS and ARGV FINISH and CANCEL share (FINISH has more ARGV: see there).
_FINISH_ARGS = """
local job_key, spec_key, events_key, inflight_key, live_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local state, end_time, result_ttl, expire_time, request_prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
"""

# Needs ``st`` as _READ_FOR_FINISH reads it and ``sets``, the job's final fields.
_FINISH_BODY = """
if st[12] then  -- the request kept in the record (a small one): no longer needed
  sets[#sets + 1] = 'spec'
  sets[#sets + 1] = ''
else
  redis.call('DEL', spec_key)
end
redis.call('HSET', job_key, unpack(sets))
local seq = tonumber(st[3] or '0') + 1
redis.call('XADD', events_key, seq .. '-0', 'k', 'd', unpack(redis.call('HGETALL', job_key)))
""" + _DROP_DATA + """
for _, key in ipairs({job_key, events_key}) do redis.call('EXPIRE', key, result_ttl) end
""" + _chunk_keys("EXPIRE") + """
if st[4] and st[4] ~= '' then redis.call('EXPIRE', request_prefix .. st[4], result_ttl) end
if st[9] then  -- no longer in flight; its result is held until the new expiry
  redis.call('ZREM', inflight_key, st[9])
  local clock = redis.call('TIME')
  local ends = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000) + 1000 * tonumber(result_ttl)
  redis.call('ZADD', live_key, 'XX', ends, st[9])
end
"""

# KEYS: job, spec, events, the tenant's inflight and live.  ARGV: state, end time, result ttl, expire
# time, request key prefix, chunks expected, field, value, ... (loss or error, and the last shard's progress).  Ends a
# queued or running job (a cancelled one was ended by CANCEL); a job meant to succeed whose
# chunks are missing ends failed. Drops the job's upload pieces and partial sums. Returns the state
# this call ended the job in, or 'was ' and the state a job had already ended in (by another shard's
# FINISH or by CANCEL), so that only one caller counts the ending.
FINISH = _FINISH_ARGS + """
local expected, FIELDS = tonumber(ARGV[6]), 7  -- the final fields: ARGV[FIELDS..]
""" + _READ_FOR_FINISH + """
if not st[1] then return false end
if st[1] ~= '1' and st[1] ~= '2' then return 'was ' .. st[1] end
local sets = {}
if state == '3' and tonumber(st[3] or '0') < expected then
  state = '4'
  sets = {'error_code', '13', 'error_message', 'result chunks missing'}
else
  for i = FIELDS, #ARGV do sets[#sets + 1] = ARGV[i] end
end
for _, v in ipairs({'state', state, 'end_time', end_time, 'expire_time', expire_time}) do sets[#sets + 1] = v end
""" + _FINISH_BODY + """
return state
"""

# KEYS: job, spec, events, the tenant's inflight and live.  ARGV: '5', now, result ttl, expire time,
# request key prefix.
# A queued or running job ends cancelled at once (its shards' workers find it ended at their next
# chunk, and queued shards never start). Returns the state before, or nil for an unknown job.
CANCEL = _FINISH_ARGS + _READ_FOR_FINISH + """
if not st[1] then return false end
if st[1] == '1' or st[1] == '2' then
  local sets = {'state', state, 'cancel', '1', 'end_time', end_time, 'expire_time', expire_time,
                'error_code', '1', 'error_message', 'cancelled by request'}
""" + _FINISH_BODY + """
end
return st[1]
"""

# KEYS: job, spec, events, index, the tenant's inflight, live and held.  ARGV: job id, request key
# prefix.  The job stops counting against the tenant's limits.  Returns 1, or 0 if unknown.
DELETE = """
local job_key, spec_key, events_key, index_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local inflight_key, live_key, held_key = KEYS[5], KEYS[6], KEYS[7]
local job_id, request_prefix = ARGV[1], ARGV[2]
""" + _READ_FOR_FINISH + _DROP_DATA + _chunk_keys("DEL") + """
local exists = redis.call('EXISTS', job_key)
local rid = st[4]
redis.call('ZREM', index_key, job_id)
redis.call('ZREM', inflight_key, job_id)
if redis.call('ZREM', live_key, job_id) == 1 then
  redis.call('HINCRBY', held_key, 'total', -tonumber(redis.call('HGET', held_key, job_id) or '0'))
  redis.call('HDEL', held_key, job_id)
end
if rid and rid ~= '' then
  local key = request_prefix .. rid
  if redis.call('GET', key) == job_id then redis.call('DEL', key) end
end
redis.call('DEL', job_key, spec_key, events_key)
return exists
"""
