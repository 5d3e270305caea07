-- A connection of a device is gone. It leaves its node's list, and the
-- device's entry if the entry still names it; the user's last device gone
-- makes it go offline after a grace period (registry_due.lua).
--
-- KEYS[1] the user's sessions, KEYS[2] the user's presence, KEYS[3] when
-- each device's connection was made, KEYS[4] the node's sessions, KEYS[5]
-- the users going offline.
-- ARGV[1] device, or "" when not known (then the device whose entry names
-- the session, if any), ARGV[2] session value, ARGV[3] now (ms), ARGV[4]
-- the user, ARGV[5] the grace period (ms).

redis.call('HDEL', KEYS[4], ARGV[2])

local device = ARGV[1]

if device == '' then
    local devices = redis.call('HGETALL', KEYS[1])

    for i = 1, #devices, 2 do
        if devices[i + 1] == ARGV[2] then
            device = devices[i]
        end
    end
end

if device == '' or redis.call('HGET', KEYS[1], device) ~= ARGV[2] then
    return 0
end

redis.call('HDEL', KEYS[1], device)
redis.call('HDEL', KEYS[3], device)

if redis.call('HLEN', KEYS[1]) == 0 then
    redis.call('HSET', KEYS[2], 'last_seen', ARGV[3])
    redis.call('ZADD', KEYS[5], tonumber(ARGV[3]) + tonumber(ARGV[5]),
               ARGV[4])
end

return 0
