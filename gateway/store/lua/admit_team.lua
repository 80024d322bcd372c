--! prelude: limits
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
--
-- The key's own counters are read and written only while it has that limit, so a key
-- in a team costs little more than a key alone: its requests and tokens count only
-- while it has an rpm or tpm (a limit set later counts from the next window), its held
-- credits only while it has a budget (the hold record then says so: settle_team.lua and
-- release_team.lua are given the key's held and spend keys for it). Its set of holds is
-- always kept: it is what a move between teams checks.
local credits = tonumber(ARGV[3])
local tokens = tonumber(ARGV[4])
local function num(key) return tonumber(redis.call('GET', key) or '0') end
local balance, held = num(KEYS[1]), num(KEYS[3])

if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then
  return {'ok', balance, held, num(KEYS[10]), num(KEYS[11])}
end

local key_budget = tonumber(ARGV[14]) > 0 or tonumber(ARGV[15]) > 0
local key_requests = tonumber(ARGV[11]) > 0 and num(KEYS[10]) or 0
local key_used = tonumber(ARGV[12]) > 0 and num(KEYS[11]) or 0

local money = ARGV[5] == '1'
local refused = refusal('key', 11, money, credits, tokens,
  function() return redis.call('SCARD', KEYS[8]) end,
  function() return key_requests end,
  function() return key_used end,
  function() return num(KEYS[9]) end,
  nil, KEYS[12], KEYS[13])
if refused then return refused end
-- The team's balance before its rate limits: a team out of credits says so first.
if money and balance - held < credits then return {'quota', balance, held, 'team'} end
refused = refusal('team', 6, money, credits, tokens,
  function() return redis.call('HLEN', KEYS[2]) end,
  function() return num(KEYS[4]) end,
  function() return num(KEYS[5]) end,
  function() return held end,
  nil, KEYS[6], KEYS[7])
if refused then return refused end

redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[8], ARGV[1])
redis.call('INCRBY', KEYS[3], credits)
if key_budget then redis.call('INCRBY', KEYS[9], credits) end
-- A window's counter gets its expiry when this write created it, not on every request.
local function count(counter, amount)
  local n = redis.call('INCRBY', counter, amount)
  if n == amount then redis.call('EXPIRE', counter, ARGV[16]) end
  return n
end
count(KEYS[4], 1)
if tonumber(ARGV[11]) > 0 then key_requests = count(KEYS[10], 1) end
if tokens > 0 then
  count(KEYS[5], tokens)
  if tonumber(ARGV[12]) > 0 then key_used = count(KEYS[11], tokens) end
end
-- The key's counts (0 for one it does not keep): what its x-ratelimit headers report.
return {'ok', balance, held + credits, key_requests, key_used}
