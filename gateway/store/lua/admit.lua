--! prelude: limits
-- Admit one request of one account (an API key, or a route's shared limits):
-- check its limits and hold the most the request can cost, atomically.
--
-- KEYS[1] balance            (integer credits; absent for a route: then no money check)
-- KEYS[2] holds              hash: charge id -> hold record
-- KEYS[3] held               integer: the sum of the holds' credits
-- KEYS[4] requests counter   of the current window
-- KEYS[5] tokens counter     of the current window
-- KEYS[6] spend today        (credits settled today)
-- KEYS[7] spend this month
-- ARGV[1] charge id            ARGV[2] hold record ("credits:tokens:lease_until:json")
-- ARGV[3] credits to hold      ARGV[4] tokens to hold
-- ARGV[5] check money (1/0)    ARGV[6] requests per window (0: no limit)
-- ARGV[7] tokens per window    ARGV[8] concurrent requests (0: no limit)
-- ARGV[9] daily budget         ARGV[10] monthly budget (0: none)
-- ARGV[11] window seconds (counter TTL)
--
-- Idempotent by charge id: a charge already held is answered "ok" and held once.
-- Returns {"ok", balance, held, requests, tokens} (this request included) or {reason,
-- current, limit, "key"} where reason is "concurrency", "requests", "tokens", "quota",
-- "daily_budget" or "monthly_budget" (the prelude's refusal()).
-- Every key shares the account's hash tag (Redis Cluster).
local credits = tonumber(ARGV[3])
local tokens = tonumber(ARGV[4])
local balance = tonumber(redis.call('GET', KEYS[1]) or '0')
local held = tonumber(redis.call('GET', KEYS[3]) or '0')
local requests = tonumber(redis.call('GET', KEYS[4]) or '0')
local used = tonumber(redis.call('GET', KEYS[5]) or '0')

-- Once per charge id: this admission sent again (its first answer lost on a broken
-- connection) finds its hold and answers as the first did, holding nothing more.
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then
  return {'ok', balance, held, requests, used}
end

local refused = refusal('key', 6, ARGV[5] == '1', credits, tokens,
  function() return redis.call('HLEN', KEYS[2]) end,
  function() return requests end,
  function() return used end,
  function() return held end,
  balance, KEYS[6], KEYS[7])
if refused then return refused end

redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('INCRBY', KEYS[3], credits)
-- A window's counter gets its expiry when this write created it, not on every request
-- (settle and release only ever change a counter that exists).
if redis.call('INCR', KEYS[4]) == 1 then redis.call('EXPIRE', KEYS[4], ARGV[11]) end
if tokens > 0 and redis.call('INCRBY', KEYS[5], tokens) == tokens then
  redis.call('EXPIRE', KEYS[5], ARGV[11])
end
return {'ok', balance, held + credits, requests + 1, used + tokens}
