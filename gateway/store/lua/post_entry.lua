-- Post one ledger entry: move the balance by a signed amount, append the entry to
-- the ledger stream and count it in the key's aggregate of the day, at most once per
-- entry id.
--
-- KEYS[1]  balance (integer credits)       gw:{key_id}:balance
-- KEYS[2]  ledger stream                   gw:{key_id}:ledger
-- KEYS[3]  idempotency marker of the entry gw:{key_id}:entry:<entry_id>
-- KEYS[4]  the key's aggregate of the day  gw:{key_id}:agg:d:<YYYYMMDD>
-- ARGV[1]  amount in credits (negative for a charge, positive for a top-up)
-- ARGV[2]  seconds the idempotency marker is kept
-- ARGV[3]  seconds a day's aggregate is kept
-- ARGV[4..] ledger fields, as name, value pairs
--
-- Returns {1, new_balance} when posted, {0, balance} when the entry was
-- already posted, {-1, balance} when the amount or the new balance would lie beyond
-- 1e15 credits (gateway/amounts.py: exact in Lua's doubles, printed with %d, since
-- tostring prints 1e14 and above as floats): then nothing is written.
-- The aggregate counts top-ups in "credited" and removals in "debited" (both positive).
-- All keys share the key id's hash tag (Redis Cluster).
local LIMIT = 1000000000000000
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if redis.call('EXISTS', KEYS[3]) == 1 then return {0, current} end
if #ARGV[1] > 17 or not string.match(ARGV[1], '^%-?%d+$') then return {-1, current} end
local amount = tonumber(ARGV[1])
local balance = current + amount
if balance > LIMIT or balance < -LIMIT then return {-1, current} end
redis.call('SET', KEYS[3], '1', 'EX', ARGV[2])
redis.call('SET', KEYS[1], string.format('%d', balance))
if amount > 0 then
  redis.call('HINCRBY', KEYS[4], 'credited', string.format('%d', amount))
elseif amount < 0 then
  redis.call('HINCRBY', KEYS[4], 'debited', string.format('%d', -amount))
end
redis.call('EXPIRE', KEYS[4], ARGV[3])
local fields = {}
for i = 4, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
fields[#fields + 1] = 'amount'
fields[#fields + 1] = ARGV[1]
fields[#fields + 1] = 'balance'
fields[#fields + 1] = string.format('%d', balance)
redis.call('XADD', KEYS[2], '*', unpack(fields))
return {1, balance}
