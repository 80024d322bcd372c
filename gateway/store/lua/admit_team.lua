-- Admit one request of a key that belongs to a team: check the key's own limits (caps
-- inside the team's) and the team's, and hold the most the request can cost on the
-- team's balance, atomically. Every key shares the team's hash tag (Redis Cluster).
--
-- KEYS[1] team balance   KEYS[2] team holds (hash: charge id -> hold record)
-- KEYS[3] team held      KEYS[4] team requests counter   KEYS[5] team tokens counter
-- KEYS[6] team spend today   KEYS[7] team spend this month
-- KEYS[8] the key's holds (set of its charge ids in flight)   KEYS[9] the key's held
-- KEYS[10] key requests counter   KEYS[11] key tokens counter
-- KEYS[12] key spend today   KEYS[13] key spend this month
-- ARGV[1] charge id   ARGV[2] hold record ("credits:tokens:lease_until:json")
-- ARGV[3] credits to hold   ARGV[4] tokens to hold   ARGV[5] check money (1/0)
-- ARGV[6..10]  the team's rpm, tpm, max_concurrent, daily and monthly budget (0: none)
-- ARGV[11..15] the key's, the same
-- ARGV[16] window seconds (counter TTL)
--
-- Idempotent by charge id, as admit.lua. Returns {"ok", team balance, team held, key
-- requests, key tokens} (this request included) or {reason, current, limit, whose}:
-- reason as admit.lua's, whose "key" or "team".
local credits = tonumber(ARGV[3])
local tokens = tonumber(ARGV[4])
local function num(key) return tonumber(redis.call('GET', key) or '0') end
local balance, held = num(KEYS[1]), num(KEYS[3])
local team_requests, team_used = num(KEYS[4]), num(KEYS[5])
local key_held, key_requests, key_used = num(KEYS[9]), num(KEYS[10]), num(KEYS[11])

if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then
  return {'ok', balance, held, key_requests, key_used}
end

-- The key's caps first (a key at its own limit says so), then the team's.
local function check(whose, base, open, requests, used, held_now, today_key, month_key)
  local concurrent = tonumber(ARGV[base + 2])
  if concurrent > 0 and open >= concurrent then return {'concurrency', open, concurrent, whose} end
  local rpm = tonumber(ARGV[base])
  if rpm > 0 and requests + 1 > rpm then return {'requests', requests, rpm, whose} end
  local tpm = tonumber(ARGV[base + 1])
  if tpm > 0 and used + tokens > tpm then return {'tokens', used, tpm, whose} end
  if ARGV[5] == '1' then
    local daily = tonumber(ARGV[base + 3])
    if daily > 0 then
      local today = num(today_key)
      if today + held_now + credits > daily then return {'daily_budget', today, daily, whose} end
    end
    local monthly = tonumber(ARGV[base + 4])
    if monthly > 0 then
      local month = num(month_key)
      if month + held_now + credits > monthly then
        return {'monthly_budget', month, monthly, whose}
      end
    end
  end
  return nil
end
local refusal = check('key', 11, redis.call('SCARD', KEYS[8]), key_requests, key_used,
  key_held, KEYS[12], KEYS[13])
if refusal then return refusal end
if ARGV[5] == '1' and balance - held < credits then return {'quota', balance, held, 'team'} end
refusal = check('team', 6, redis.call('HLEN', KEYS[2]), team_requests, team_used, held,
  KEYS[6], KEYS[7])
if refusal then return refusal end

redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[8], ARGV[1])
redis.call('INCRBY', KEYS[3], credits)
redis.call('INCRBY', KEYS[9], credits)
for _, counter in ipairs({KEYS[4], KEYS[10]}) do
  redis.call('INCR', counter)
  redis.call('EXPIRE', counter, ARGV[16])
end
if tokens > 0 then
  for _, counter in ipairs({KEYS[5], KEYS[11]}) do
    redis.call('INCRBY', counter, tokens)
    redis.call('EXPIRE', counter, ARGV[16])
  end
end
return {'ok', balance, held + credits, key_requests + 1, key_used + tokens}
