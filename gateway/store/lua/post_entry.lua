-- Post one ledger entry: move the balance by a signed amount and append the
-- entry to the ledger stream, at most once per entry id.
--
-- KEYS[1]  balance (integer credits)       gw:{key_id}:balance
-- KEYS[2]  ledger stream                   gw:{key_id}:ledger
-- KEYS[3]  idempotency marker of the entry gw:{key_id}:entry:<entry_id>
-- ARGV[1]  amount in credits (negative for a charge, positive for a top-up)
-- ARGV[2]  seconds the idempotency marker is kept
-- ARGV[3..] ledger fields, as name, value pairs
--
-- Returns {1, new_balance} when posted, {0, balance} when the entry was
-- already posted. All keys share the key id's hash tag (Redis Cluster).
if not redis.call('SET', KEYS[3], '1', 'NX', 'EX', ARGV[2]) then
  return {0, tonumber(redis.call('GET', KEYS[1]) or '0')}
end
local balance = redis.call('INCRBY', KEYS[1], ARGV[1])
local fields = {}
for i = 3, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
fields[#fields + 1] = 'amount'
fields[#fields + 1] = ARGV[1]
fields[#fields + 1] = 'balance'
fields[#fields + 1] = tostring(balance)
redis.call('XADD', KEYS[2], '*', unpack(fields))
return {1, balance}
