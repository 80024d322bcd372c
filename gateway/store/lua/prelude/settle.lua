-- Prelude "settle" (settle.lua, settle_team.lua): prepended by the loader
-- (gateway/store/store.py, load_script) to a script whose first line names it
-- ("--! prelude: settle"), since Redis runs each script whole and has no includes.
-- Local definitions only: it reads and writes nothing by itself.

-- An integer within 1e15 credits (gateway/amounts.py), from its decimal text; nil if not.
-- Exact in Lua's doubles, and printed with %d (tostring would print 1e14 and above as
-- floats).
local function whole(text)
  if #text > 17 or not string.match(text, '^%-?%d+$') then return nil end
  local n = tonumber(text)
  if n > 1000000000000000 or n < -1000000000000000 then return nil end
  return n
end

-- A settlement's validation (settle.lua, settle_team.lua), before anything is written:
-- ARGV[2] credits, ARGV[3] tokens, ARGV[4] the ledger fields (a JSON array of strings:
-- name, value, name, value...; one argument instead of two a field, which the gateway
-- packs for each settlement), ARGV[8] 1 for an error.
-- Returns amount, tokens used, the counts for the aggregates ({metric, n}, no zero), the
-- agent and the ledger fields (a Lua array); or nil and the error to answer.
local TOKENS = {input_tokens = true, output_tokens = true, cached_input_tokens = true,
  cache_write_tokens = true, reasoning_tokens = true}
local function settlement()
  local amount, used = whole(ARGV[2]), whole(ARGV[3])
  if not amount or not used then
    return nil, redis.error_reply('ERR settle: credits or tokens out of range')
  end
  local fields = cjson.decode(ARGV[4])
  if type(fields) ~= 'table' or #fields % 2 ~= 0 then
    return nil, redis.error_reply('ERR settle: ledger fields are not name, value pairs')
  end
  local counts, agent = {}, ''
  if amount ~= 0 then counts[#counts + 1] = {'credits', amount} end
  counts[#counts + 1] = {'requests', 1}
  if ARGV[8] == '1' then counts[#counts + 1] = {'errors', 1} end
  for i = 1, #fields - 1, 2 do
    local name, value = fields[i], fields[i + 1]
    if type(name) ~= 'string' or type(value) ~= 'string' then
      return nil, redis.error_reply('ERR settle: ledger fields are not name, value pairs')
    end
    if name == 'agent' then
      agent = value
    elseif TOKENS[name] then
      local n = whole(value)
      if not n or n < 0 then
        return nil, redis.error_reply('ERR settle: token count out of range')
      end
      if n ~= 0 then counts[#counts + 1] = {name, n} end
    end
  end
  return amount, used, counts, agent, fields
end

-- Add the charge (ARGV[2], amount as a number) to a spend counter. The counter gets its
-- retention (ARGV[6] seconds) when this charge created it (its name holds its day or
-- month), not on every charge.
local function spend(counter, amount)
  if redis.call('INCRBY', counter, ARGV[2]) == amount then
    redis.call('EXPIRE', counter, ARGV[6])
  end
end

-- Count a settlement in an hour's hash (totals) and a day's (each agent's,
-- "<metric>|<agent>"), a zero never written. A bucket's first request (its count now 1)
-- gives the hash its retention (ARGV[9] and ARGV[10] seconds): once per hour and per
-- agent and day, not once per request.
local function aggregate(hour_key, day_key, counts, agent)
  for _, count in ipairs(counts) do
    local n = string.format('%d', count[2])
    local hour = redis.call('HINCRBY', hour_key, count[1], n)
    local day = redis.call('HINCRBY', day_key, count[1] .. '|' .. agent, n)
    if count[1] == 'requests' then
      if hour == 1 then redis.call('EXPIRE', hour_key, ARGV[9]) end
      if day == 1 then redis.call('EXPIRE', day_key, ARGV[10]) end
    end
  end
end

-- Append a settlement's ledger entry: its fields (settlement()'s, in their order) and its
-- amount (negative: a charge), the credits it held and the balance after.
local function ledger_entry(ledger, fields, amount, held, balance)
  fields[#fields + 1] = 'amount'
  fields[#fields + 1] = string.format('%d', -amount)
  fields[#fields + 1] = 'held'
  fields[#fields + 1] = string.format('%d', held)
  fields[#fields + 1] = 'balance'
  fields[#fields + 1] = string.format('%d', balance)
  redis.call('XADD', ledger, '*', unpack(fields))
end
