-- Settle one request: release its hold, charge its true cost, append the ledger
-- entry and count it in the key's aggregates, at most once per charge id.
--
-- KEYS[1] balance   KEYS[2] holds   KEYS[3] held   KEYS[4] ledger stream
-- KEYS[5] idempotency marker of the charge
-- KEYS[6] tokens counter of the window the request was admitted in
-- KEYS[7] spend today   KEYS[8] spend this month
-- KEYS[9] the key's aggregate of this hour   KEYS[10] of this day (hashes)
-- ARGV[1] charge id (the hold's field)   ARGV[2] credits to charge
-- ARGV[3] tokens used (corrects the window's token count)
-- ARGV[4] seconds the marker is kept     ARGV[5] seconds a spend counter is kept
-- ARGV[6] 1 to append a ledger entry (0 for a request that cost nothing)
-- ARGV[7] 1 if the request did not complete (an error)
-- ARGV[8] seconds an hour's aggregate is kept   ARGV[9] seconds a day's
-- ARGV[10..] ledger fields as name, value pairs
--
-- Returns {1, balance} when settled now, {0, balance} when already settled.
--
-- Amounts are integers within 1e15 (gateway/amounts.py): exact in Lua's doubles, and
-- printed with %d (tostring would print 1e14 and above as floats). One out of range is
-- refused before anything is written, so the script never half-applies.
--
-- Aggregates (gateway/store/aggregates.py): the hour's hash counts the key's totals,
-- the day's each agent's ("<metric>|<agent>"); metrics are credits, requests, errors
-- and the token counts, a zero never written.
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
  redis.call('DECRBY', KEYS[3], held_credits)
  local correction = used - held_tokens
  if correction ~= 0 and redis.call('EXISTS', KEYS[6]) == 1 then
    redis.call('INCRBY', KEYS[6], correction)
  end
end
local balance = redis.call('DECRBY', KEYS[1], ARGV[2])
if amount ~= 0 then
  for i = 7, 8 do
    redis.call('INCRBY', KEYS[i], ARGV[2])
    redis.call('EXPIRE', KEYS[i], ARGV[5])
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
