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
-- Returns {"ok", balance, held, requests, tokens} (this request included) or {reason, detail1, detail2} where reason is
-- "concurrency", "requests", "tokens", "quota", "daily_budget" or "monthly_budget".
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

local concurrent = tonumber(ARGV[8])
if concurrent > 0 then
  local open = redis.call('HLEN', KEYS[2])
  if open >= concurrent then return {'concurrency', open, concurrent} end
end
local rpm = tonumber(ARGV[6])
if rpm > 0 and requests + 1 > rpm then return {'requests', requests, rpm} end
local tpm = tonumber(ARGV[7])
if tpm > 0 and used + tokens > tpm then return {'tokens', used, tpm} end
if ARGV[5] == '1' then
  if balance - held < credits then return {'quota', balance, held} end
  local daily = tonumber(ARGV[9])
  local today = tonumber(redis.call('GET', KEYS[6]) or '0')
  if daily > 0 and today + held + credits > daily then return {'daily_budget', today, daily} end
  local monthly = tonumber(ARGV[10])
  local month = tonumber(redis.call('GET', KEYS[7]) or '0')
  if monthly > 0 and month + held + credits > monthly then
    return {'monthly_budget', month, monthly}
  end
end

redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('INCRBY', KEYS[3], credits)
redis.call('INCR', KEYS[4])
redis.call('EXPIRE', KEYS[4], ARGV[11])
if tokens > 0 then
  redis.call('INCRBY', KEYS[5], tokens)
  redis.call('EXPIRE', KEYS[5], ARGV[11])
end
return {'ok', balance, held + credits, requests + 1, used + tokens}
