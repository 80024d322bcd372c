-- Count one settled request in the gateway-wide aggregates, once per charge id:
-- what the console's overview and GET /admin/aggregates read.
--
-- Best-effort by design: every key here shares the hash tag {gw:agg}, a slot of its
-- own, so on Redis Cluster this cannot run in the same script as the key's
-- settlement (gateway/store/lua/settle.lua, whose per-key aggregates are exact). It
-- rides in the same pipeline as that settlement (no round trip of its own on a single
-- Redis); the marker makes a resent batch count once.
--
-- KEYS[1] marker of the charge   KEYS[2] the hour's hash   KEYS[3] the day's hash
-- KEYS[4] the day's spend by key (sorted set)
-- ARGV[1] seconds the marker is kept   ARGV[2] seconds an hour is kept   ARGV[3] a day
-- ARGV[4] key id   ARGV[5] agent   ARGV[6] 1 if the request did not complete
-- ARGV[7] credits   ARGV[8..12] input, output, cached input, cache write, reasoning tokens
--
-- Returns 1 when counted now, 0 when counted before.
local function whole(text)
  if #text > 17 or not string.match(text, '^%d+$') then return nil end
  local n = tonumber(text)
  if n > 1000000000000000 then return nil end
  return n
end
local NAMES = {'credits', 'input_tokens', 'output_tokens', 'cached_input_tokens',
  'cache_write_tokens', 'reasoning_tokens'}
local counts = {{'requests', 1}}
if ARGV[6] == '1' then counts[#counts + 1] = {'errors', 1} end
for i, name in ipairs(NAMES) do
  local n = whole(ARGV[6 + i])
  if not n then return redis.error_reply('ERR aggregate: count out of range') end
  if n ~= 0 then counts[#counts + 1] = {name, n} end
end
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
for _, count in ipairs(counts) do
  local n = string.format('%d', count[2])
  redis.call('HINCRBY', KEYS[2], count[1], n)
  redis.call('HINCRBY', KEYS[3], count[1], n)
  redis.call('HINCRBY', KEYS[3], count[1] .. '|' .. ARGV[5], n)
end
if ARGV[7] ~= '0' then redis.call('ZINCRBY', KEYS[4], ARGV[7], ARGV[4]) end
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[3], ARGV[3])
redis.call('EXPIRE', KEYS[4], ARGV[3])
return 1
