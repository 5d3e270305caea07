-- The users due offline now, at most ARGV[2] of them, each with when it
-- was last seen; the caller announces them with registry_gone.lua.
--
-- KEYS[1] the users going offline. ARGV[1] now (ms), ARGV[2] how many,
-- ARGV[3] the prefix of a user's presence key.
-- Returns user, last_seen, user, last_seen, ...

local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1],
                       'LIMIT', 0, tonumber(ARGV[2]))
local r = {}

for _, user in ipairs(due) do
    r[#r + 1] = user
    r[#r + 1] = redis.call('HGET', ARGV[3] .. user, 'last_seen') or '0'
end

return r
