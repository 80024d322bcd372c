-- Extend the lease of a live hold and record its progress, unless it is gone.
-- KEYS[1] holds   ARGV[1] charge id   ARGV[2] the new hold record
-- Returns 1 when renewed, 0 when the hold was already settled.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
