-- Settle one request of a key in a team: release its hold on the team and on the key,
-- charge its true cost to the team's balance, append the entry (naming the key) to the
-- team's ledger and count it in the team's aggregates, at most once per charge id.
-- settle.lua for a team: the same ARGV, more KEYS, all under the team's hash tag.
--
-- KEYS[1] team balance   KEYS[2] team holds   KEYS[3] team held   KEYS[4] team ledger
-- KEYS[5] idempotency marker of the charge
-- KEYS[6] team tokens counter of the window the request was admitted in
-- KEYS[7] team spend today   KEYS[8] team spend this month
-- KEYS[9] the team's aggregate of this hour   KEYS[10] of this day (hashes)
-- KEYS[11] the key's holds (set)   KEYS[12] the key's tokens counter of the admission window
-- and for a key that had a budget at admission (its hold record says so):
-- KEYS[13] the key's held   KEYS[14] its spend today   KEYS[15] its spend this month
-- ARGV as settle.lua's (the ledger fields name the key: key_id).
--
-- Returns {1, balance} when settled now, {0, balance} when already settled.
local function whole(text)
  if #text > 17 or not string.match(text, '^%-?%d+$') then return nil end
  local n = tonumber(text)
  if n > 1000000000000000 or n < -1000000000000000 then return nil end
  return n
end
local TOKENS = {input_tokens = true, output_tokens = true, cached_input_tokens = true,
  cache_write_tokens = true, reasoning_tokens = true}
if redis.call('EXISTS', KEYS[5]) == 1 then
  return {0, tonumber(redis.call('GET', KEYS[1]) or '0')}
end
local amount, used = whole(ARGV[2]), whole(ARGV[3])
if not amount or not used then
  return redis.error_reply('ERR settle: credits or tokens out of range')
end
local counts, agent = {}, ''
if amount ~= 0 then counts[#counts + 1] = {'credits', amount} end
counts[#counts + 1] = {'requests', 1}
if ARGV[7] == '1' then counts[#counts + 1] = {'errors', 1} end
for i = 10, #ARGV - 1, 2 do
  local name = ARGV[i]
  if name == 'agent' then
    agent = ARGV[i + 1]
  elseif TOKENS[name] then
    local n = whole(ARGV[i + 1])
    if not n or n < 0 then return redis.error_reply('ERR settle: token count out of range') end
    if n ~= 0 then counts[#counts + 1] = {name, n} end
  end
end
redis.call('SET', KEYS[5], '1', 'EX', ARGV[4])
local hold = redis.call('HGET', KEYS[2], ARGV[1])
local held_credits, held_tokens = 0, 0
if hold then
  held_credits, held_tokens = string.match(hold, '^(%-?%d+):(%d+):')
  held_credits, held_tokens = tonumber(held_credits), tonumber(held_tokens)
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('SREM', KEYS[11], ARGV[1])
  redis.call('DECRBY', KEYS[3], held_credits)
  if KEYS[13] then redis.call('DECRBY', KEYS[13], held_credits) end
  local correction = used - held_tokens
  if correction ~= 0 then
    for _, counter in ipairs({KEYS[6], KEYS[12]}) do
      if redis.call('EXISTS', counter) == 1 then redis.call('INCRBY', counter, correction) end
    end
  end
end
local balance = redis.call('DECRBY', KEYS[1], ARGV[2])
if amount ~= 0 then
  -- A spend counter gets its retention when this charge created it (its name holds
  -- its day or month), not on every charge.
  for _, i in ipairs(KEYS[13] and {7, 8, 14, 15} or {7, 8}) do
    if redis.call('INCRBY', KEYS[i], ARGV[2]) == amount then
      redis.call('EXPIRE', KEYS[i], ARGV[5])
    end
  end
end
-- The hour counts the key's totals; the day each agent's (its totals are their sum).
-- A bucket's first request (its count now 1) gives the hash its retention: once per
-- hour and per agent and day, not once per request.
for _, count in ipairs(counts) do
  local n = string.format('%d', count[2])
  local hour = redis.call('HINCRBY', KEYS[9], count[1], n)
  local day = redis.call('HINCRBY', KEYS[10], count[1] .. '|' .. agent, n)
  if count[1] == 'requests' then
    if hour == 1 then redis.call('EXPIRE', KEYS[9], ARGV[8]) end
    if day == 1 then redis.call('EXPIRE', KEYS[10], ARGV[9]) end
  end
end
if ARGV[6] == '1' then
  local fields = {}
  for i = 10, #ARGV do fields[#fields + 1] = ARGV[i] end
  fields[#fields + 1] = 'amount'
  fields[#fields + 1] = string.format('%d', -amount)
  fields[#fields + 1] = 'held'
  fields[#fields + 1] = string.format('%d', held_credits)
  fields[#fields + 1] = 'balance'
  fields[#fields + 1] = string.format('%d', balance)
  redis.call('XADD', KEYS[4], '*', unpack(fields))
end
return {1, balance}
