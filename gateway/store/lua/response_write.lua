-- Write the progress of a background response: its events, its object, its lease.
-- KEYS[1] the stored response   KEYS[2] its event stream   KEYS[3] its run token
-- KEYS[4] its cancel flag   KEYS[5] the key's index of stored responses
-- ARGV[1] the writer's token   ARGV[2] mode: begin | step | final
-- ARGV[3] retention (ms)   ARGV[4] the run's lease (ms)
-- ARGV[5] trim the stream below this id ('' keeps it whole)
-- ARGV[6] the response object to store ('' keeps the stored one)
-- ARGV[7] now (ms)   ARGV[8] the response id
-- ARGV[9..] events, three arguments each: stream entry id, type, JSON
-- Returns 'ok'; 'cancel' when a cancel is requested; 'done' after 'final';
-- 'lost' when another process owns the run now (nothing written); 'gone' when the
-- response was deleted (nothing written, and the run ends).
local mode = ARGV[2]
if mode == 'begin' then
  redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[4])
else
  if redis.call('GET', KEYS[3]) ~= ARGV[1] then return 'lost' end
  if redis.call('EXISTS', KEYS[1]) == 0 then
    redis.call('DEL', KEYS[3], KEYS[4])
    return 'gone'
  end
end
if ARGV[6] ~= '' then
  redis.call('SET', KEYS[1], ARGV[6], 'PX', ARGV[3])
  -- Listed for erasure as save_indexed.lua does.
  redis.call('ZADD', KEYS[5], tonumber(ARGV[7]) + tonumber(ARGV[3]), ARGV[8])
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', ARGV[7])
  if redis.call('PTTL', KEYS[5]) < tonumber(ARGV[3]) then
    redis.call('PEXPIRE', KEYS[5], ARGV[3])
  end
end
if #ARGV >= 11 then
  for i = 9, #ARGV, 3 do
    redis.call('XADD', KEYS[2], ARGV[i], 't', ARGV[i + 1], 'e', ARGV[i + 2])
  end
  if ARGV[5] ~= '' then
    redis.call('XTRIM', KEYS[2], 'MINID', ARGV[5])
  end
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
if mode == 'final' then
  redis.call('DEL', KEYS[3], KEYS[4])
  return 'done'
end
redis.call('PEXPIRE', KEYS[3], ARGV[4])
if redis.call('EXISTS', KEYS[4]) == 1 then return 'cancel' end
return 'ok'
