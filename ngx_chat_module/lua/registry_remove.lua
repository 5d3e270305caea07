-- A connection of a device is gone; it owned the device's entry only if
-- the entry still names it.
--
-- KEYS[1] the user's sessions, KEYS[2] the user's presence, KEYS[3] when
-- each device's connection was made, KEYS[4] the presence channel.
-- ARGV[1] device, ARGV[2] session value, ARGV[3] now (ms), ARGV[4] the
-- presence event that says the user went offline at that time.

if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
    return 0
end

redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])

if redis.call('HLEN', KEYS[1]) == 0 then
    redis.call('HSET', KEYS[2], 'last_seen', ARGV[3])
    redis.call('PUBLISH', KEYS[4], ARGV[4])
end

return 0
