-- Raises each partition's delivered position, never lowers it: a worker
-- that takes over partitions replays from the committed offset, below what
-- its predecessor delivered, and must not forget how far that went.
--
-- KEYS[1] the delivered hash of the topic and group.
-- ARGV pairs of a partition and the last offset a batch answered in it.

for i = 1, #ARGV, 2 do
    local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[i]))

    if cur == nil or cur < tonumber(ARGV[i + 1]) then
        redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    end
end

return 0
