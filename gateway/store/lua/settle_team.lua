--! prelude: settle
-- Settle one request of a key in a team: release its hold on the team and on the key,
-- charge its true cost to the team's balance, append the entry (naming the key) to the
-- team's ledger and count it in the key's aggregates kept under the team's tag, at most
-- once per charge id. settle.lua for a team: the same ARGV, more KEYS, all under the
-- team's tag. A team's aggregates are the sum of its keys' (gateway/store/aggregates.py),
-- so a request is counted once, as a lone key's is: a key in a team costs no more.
--
-- KEYS[1] team balance   KEYS[2] team holds   KEYS[3] team held   KEYS[4] team ledger
-- KEYS[5] idempotency marker of the charge
-- KEYS[6] team tokens counter of the window the request was admitted in
-- KEYS[7] team spend today   KEYS[8] team spend this month
-- KEYS[9] the key's aggregate of this hour in the team   KEYS[10] of this day (hashes)
-- KEYS[11] the key's holds (set)   KEYS[12] the key's tokens counter of the admission window
-- and for a key that had a budget at admission (its hold record says so):
-- KEYS[13] the key's held   KEYS[14] its spend today   KEYS[15] its spend this month
-- ARGV as settle.lua's (the ledger fields name the key: key_id).
--
-- Returns {1, balance} when settled now, {0, balance} when already settled.
local amount, used, counts, agent, fields = settlement()
if not amount then return used end
-- Checked, then marked: once per charge id (the marker is the script's first write).
if not redis.call('SET', KEYS[5], '1', 'NX', 'EX', ARGV[5]) then
  return {0, tonumber(redis.call('GET', KEYS[1]) or '0')}
end
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
  spend(KEYS[7], amount)
  spend(KEYS[8], amount)
  if KEYS[13] then
    spend(KEYS[14], amount)
    spend(KEYS[15], amount)
  end
end
aggregate(KEYS[9], KEYS[10], counts, agent)
if ARGV[7] == '1' then ledger_entry(KEYS[4], fields, amount, held_credits, balance) end
return {1, balance}
