-- Write an A2A task: its stream responses, its record, its lease, at once.
-- KEYS[1] the task   KEYS[2] its stream   KEYS[3] its run's lease
-- KEYS[4] the key's task list at its agent   KEYS[5] the key's index of tasks (erasure)
-- KEYS[6] the key's set of task lists
-- ARGV[1] the task record ('' appends events only)   ARGV[2] retention (ms)
-- ARGV[3] now (ms)   ARGV[4] the task id
-- ARGV[5] the writer: 'take' (a run starting: takes the lease), 'keep' (a run going on:
--   holds it), 'end' (a run ending: holds it, gives it up), '' (no run: a cancel)
-- ARGV[6] the lease (ms)
-- ARGV[7] the stream's last entry id as the writer knows it ('0': none)
-- ARGV[8..] events, two arguments each: entry id, value (sealed to that id by the writer)
-- Returns {1, the stream's last entry id}; {0, its last entry id} when that is not
-- ARGV[7] (another writer added events): nothing is written, the writer seals again;
-- {-1, ''} when a run's lease is gone (the task was erased, or its run taken for
-- dead): nothing is written, and the run stops.
local mode = ARGV[5]
if (mode == 'keep' or mode == 'end') and redis.call('EXISTS', KEYS[3]) == 0 then
  return {-1, ''}
end
local last = ARGV[7]
if #ARGV >= 9 then
  local top = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
  local current = '0'
  if top[1] then current = top[1][1] end
  if current ~= last then return {0, current} end
  for i = 8, #ARGV, 2 do
    redis.call('XADD', KEYS[2], ARGV[i], 'e', ARGV[i + 1])
    last = ARGV[i]
  end
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
local retention = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local function extend(name)
  if redis.call('PTTL', name) < retention then redis.call('PEXPIRE', name, retention) end
end
if ARGV[1] ~= '' then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', retention)
  redis.call('ZADD', KEYS[4], now, ARGV[4])
  extend(KEYS[4])
  -- Listed for erasure as save_indexed.lua does: by expiry, expired entries dropped.
  redis.call('ZADD', KEYS[5], now + retention, ARGV[4])
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)
  extend(KEYS[5])
  redis.call('SADD', KEYS[6], KEYS[4])
  extend(KEYS[6])
end
if mode == 'take' then
  redis.call('SET', KEYS[3], '1', 'PX', ARGV[6])
elseif mode == 'end' then
  redis.call('DEL', KEYS[3])
end
return {1, last}
