-- A user says it is away, or back.
--
-- KEYS[1] the user's sessions, KEYS[2] the user's presence, KEYS[3] the
-- presence channel. ARGV[1] "online" or "away", ARGV[2] the presence event
-- that says so, published only when it changes something a watcher sees.

local away = (ARGV[1] == 'away') and '1' or '0'
local old = redis.call('HGET', KEYS[2], 'away') or '0'

redis.call('HSET', KEYS[2], 'away', away)

if old ~= away and redis.call('HLEN', KEYS[1]) > 0 then
    redis.call('PUBLISH', KEYS[3], ARGV[2])
end

return 0
