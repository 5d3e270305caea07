-- The sessions of nodes that stopped saying they are alive (a crashed
-- server, a killed process) go, at most ARGV[2] of them per call; their
-- users with no device left are due offline now, seen when their node was
-- last alive.
--
-- KEYS[1] the nodes, KEYS[2] the users going offline.
-- ARGV[1] now (ms), ARGV[2] how many sessions at most, ARGV[3] how long a
-- node's word lasts (ms), ARGV[4] the prefix of a node's sessions key,
-- ARGV[5] of a user's sessions key, ARGV[6] of its connection times key,
-- ARGV[7] of its presence key.
-- Returns how many sessions went (ARGV[2]: call again).

local now = tonumber(ARGV[1])
local budget = tonumber(ARGV[2])
local done = 0

local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now,
                        'LIMIT', 0, 4)

for _, node in ipairs(dead) do
    local nkey = ARGV[4] .. node
    local seen = tonumber(redis.call('ZSCORE', KEYS[1], node))
                 - tonumber(ARGV[3])
    local scan = redis.call('HSCAN', nkey, 0, 'COUNT', budget - done)
    local entries = scan[2]

    for i = 1, #entries, 2 do
        local value, user = entries[i], entries[i + 1]
        local skey = ARGV[5] .. user
        local devices = redis.call('HGETALL', skey)

        for j = 1, #devices, 2 do
            if devices[j + 1] == value then
                redis.call('HDEL', skey, devices[j])
                redis.call('HDEL', ARGV[6] .. user, devices[j])
            end
        end

        if redis.call('HLEN', skey) == 0 then
            redis.call('HSET', ARGV[7] .. user, 'last_seen', seen)
            redis.call('ZADD', KEYS[2], now, user)
        end

        redis.call('HDEL', nkey, value)
        done = done + 1
    end

    if redis.call('HLEN', nkey) == 0 then
        redis.call('ZREM', KEYS[1], node)
    end

    if done >= budget then
        break
    end
end

return done
