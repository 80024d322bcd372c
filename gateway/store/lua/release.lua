-- Release a hold without charging (a route's shared limits, or an account's
-- hold whose request never started), correcting the window's token count.
-- KEYS[1] holds   KEYS[2] held   KEYS[3] tokens counter of the admission window
-- KEYS[4] requests counter of that window
-- ARGV[1] charge id   ARGV[2] tokens used
-- ARGV[3] 1 for a refused admission: the request is uncounted, so a refusal uses
--         up no one's requests per minute (0 when settling: the request ran)
-- Returns 1 when released, 0 when there was no such hold.
local hold = redis.call('HGET', KEYS[1], ARGV[1])
if not hold then return 0 end
local credits, tokens = string.match(hold, '^(%-?%d+):(%d+):')
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('DECRBY', KEYS[2], tonumber(credits))
local correction = tonumber(ARGV[2]) - tonumber(tokens)
if correction ~= 0 and redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('INCRBY', KEYS[3], correction)
end
if ARGV[3] == '1' and redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('DECR', KEYS[4])
end
return 1
