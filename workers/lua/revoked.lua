-- Raises fields of chat:revoked to the revocations' times, never lowers
-- one: a worker writing the hash again from PostgreSQL may have read its
-- rows before another worker stored (and raised) a newer revocation.
--
-- KEYS[1] chat:revoked.
-- ARGV pairs of a field ("<user>" or "<user> <device>") and a time (ms).
-- Returns how many fields it raised.

local raised = 0

for i = 1, #ARGV, 2 do
    local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[i]))

    if cur == nil or cur < tonumber(ARGV[i + 1]) then
        redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
        raised = raised + 1
    end
end

return raised
