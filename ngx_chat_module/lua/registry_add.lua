-- A connection of a device registers itself.
--
-- KEYS[1] the user's sessions, KEYS[2] the user's presence, KEYS[3] when
-- each device's connection was made, KEYS[4] the node's sessions, KEYS[5]
-- the users going offline, KEYS[6] the user's presence channel.
-- ARGV[1] device, ARGV[2] session value, ARGV[3] "replace" on connect or
-- "restore" when Redis may have lost it (a connection of the device
-- registered meanwhile wins), ARGV[4] when the connection was made (us),
-- ARGV[5] the user, ARGV[6] the presence event that says it is online.
--
-- The older of two connections of a device loses, whichever registration
-- reaches Redis first: the two may come from different nginx processes,
-- each on its own Redis link. Returns the session value to close as
-- replaced (ours, when the other connection is the newer one), or 0.

local old = redis.call('HGET', KEYS[1], ARGV[1])

if old == ARGV[2] then
    redis.call('HSET', KEYS[4], ARGV[2], ARGV[5])
    return 0
end

if old and ARGV[3] == 'restore' then
    return 0
end

if old and tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
           > tonumber(ARGV[4]) then
    return ARGV[2]
end

redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
redis.call('HSET', KEYS[4], ARGV[2], ARGV[5])

if old then
    return old
end

-- the first device: online, unless watchers never saw it go
if redis.call('HLEN', KEYS[1]) == 1
   and redis.call('ZREM', KEYS[5], ARGV[5]) == 0 then
    redis.call('HDEL', KEYS[2], 'away')
    redis.call('PUBLISH', KEYS[6], ARGV[6])
end

return 0
