-- Store a piece of content and list it in its key's index of that kind, which is
-- what erasure walks (gateway/store/erasure.py): stored responses, and any other kind.
-- KEYS[1] the value's key   KEYS[2] the key's index (sorted set of ids, by expiry in ms)
-- ARGV[1] the value   ARGV[2] retention (ms)   ARGV[3] now (ms)   ARGV[4] its id
-- ARGV[5] '1': only replace a value still stored (one deleted meanwhile stays deleted)
-- Returns 1 when stored, 0 when not (ARGV[5] and the value was gone).
if ARGV[5] == '1' then
  if not redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'XX') then return 0 end
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
local expires = tonumber(ARGV[3]) + tonumber(ARGV[2])
redis.call('ZADD', KEYS[2], expires, ARGV[4])
-- Entries of responses expired by now go; the index lives as long as its newest entry.
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return 1
