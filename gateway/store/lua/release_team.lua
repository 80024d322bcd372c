-- Release a team member's hold without charging (its request never ran: a route's
-- shared limits refused it, or its client left during admission), on the team and on
-- the key, correcting both token counts. Every key shares the team's hash tag.
-- KEYS[1] team holds   KEYS[2] team held   KEYS[3] team tokens counter (admission window)
-- KEYS[4] team requests counter   KEYS[5] key holds (set)   KEYS[6] key tokens counter
-- KEYS[7] key requests counter   KEYS[8] the key's held, for a key that had a budget at
-- admission (its hold record says so)
-- ARGV[1] charge id   ARGV[2] tokens used   ARGV[3] 1 for a refused admission (uncounted)
-- Returns 1 when released, 0 when there was no such hold.
local hold = redis.call('HGET', KEYS[1], ARGV[1])
if not hold then return 0 end
local credits, tokens = string.match(hold, '^(%-?%d+):(%d+):')
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[5], ARGV[1])
redis.call('DECRBY', KEYS[2], tonumber(credits))
if KEYS[8] then redis.call('DECRBY', KEYS[8], tonumber(credits)) end
local correction = tonumber(ARGV[2]) - tonumber(tokens)
for _, counter in ipairs({KEYS[3], KEYS[6]}) do
  if correction ~= 0 and redis.call('EXISTS', counter) == 1 then
    redis.call('INCRBY', counter, correction)
  end
end
if ARGV[3] == '1' then
  for _, counter in ipairs({KEYS[4], KEYS[7]}) do
    if redis.call('EXISTS', counter) == 1 then redis.call('DECR', counter) end
  end
end
return 1
