-- Store a response and list it in its key's index of stored responses.
-- KEYS[1] the stored response   KEYS[2] the key's index (sorted set, by expiry in ms)
-- ARGV[1] the value   ARGV[2] retention (ms)   ARGV[3] now (ms)   ARGV[4] the response id
-- ARGV[5] '1': only replace a response still stored (one deleted meanwhile stays deleted)
-- Returns 1 when stored, 0 when not (ARGV[5] and the response was gone).
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
