-- A worker takes partitions, before it processes any of their records:
-- its epochs go in (newer wins; missing: take it), so that from now on the
-- previous owner, should it wake up and publish, is fenced; and their
-- delivered marks come back, read after that, so that what the previous
-- owner published before (even a moment before) is not said again.
--
-- KEYS[1] the delivered marks, KEYS[2] the epochs (hashes of the topic and
-- group, field the partition).
-- ARGV pairs of a partition and the epoch this worker took it with (us).
-- Returns, per pair, the partition's mark (-1: none), or -2 when a newer
-- owner's epoch is there already (the partition is not ours any more).

local out = {}

for i = 1, #ARGV, 2 do
    local cur = tonumber(redis.call('HGET', KEYS[2], ARGV[i]))

    if cur and cur > tonumber(ARGV[i + 1]) then
        out[#out + 1] = -2
    else
        redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
        out[#out + 1] = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or -1)
    end
end

return out
