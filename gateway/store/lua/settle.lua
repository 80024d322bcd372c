--! prelude: settle
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
-- ARGV[4] the ledger fields: a JSON array of strings, name, value, name, value...
-- ARGV[5] seconds the marker is kept     ARGV[6] seconds a spend counter is kept
-- ARGV[7] 1 to append a ledger entry (0 for a request that cost nothing)
-- ARGV[8] 1 if the request did not complete (an error)
-- ARGV[9] seconds an hour's aggregate is kept   ARGV[10] seconds a day's
-- (ARGV[1..4] are the request's own, packed together by the gateway; ARGV[5..10] are
-- one of four runs it packs once: gateway/store/holds.py, _SETTLE_FLAGS.)
--
-- Returns {1, balance} when settled now, {0, balance} when already settled.
--
-- Amounts are integers within 1e15 (gateway/amounts.py), checked by the prelude's
-- settlement() before anything is written, so the script never half-applies.
--
-- Aggregates (gateway/store/aggregates.py, the prelude's aggregate()): the hour's hash
-- counts the key's totals, the day's each agent's ("<metric>|<agent>"); metrics are
-- credits, requests, errors and the token counts, a zero never written.
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
  redis.call('DECRBY', KEYS[3], held_credits)
  local correction = used - held_tokens
  if correction ~= 0 and redis.call('EXISTS', KEYS[6]) == 1 then
    redis.call('INCRBY', KEYS[6], correction)
  end
end
local balance = redis.call('DECRBY', KEYS[1], ARGV[2])
if amount ~= 0 then
  spend(KEYS[7], amount)
  spend(KEYS[8], amount)
end
aggregate(KEYS[9], KEYS[10], counts, agent)
if ARGV[7] == '1' then ledger_entry(KEYS[4], fields, amount, held_credits, balance) end
return {1, balance}
