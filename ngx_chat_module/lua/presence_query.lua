-- The presence of users, now.
--
-- KEYS in pairs: a user's sessions, then the user's presence.
-- Returns one string per user: "online -", "away -" or "offline <ms>"
-- ("offline -" for a user never seen).

local r = {}

for i = 1, #KEYS, 2 do
    local p = redis.call('HMGET', KEYS[i + 1], 'away', 'last_seen')

    if redis.call('HLEN', KEYS[i]) > 0 then
        r[#r + 1] = (p[1] == '1') and 'away -' or 'online -'
    else
        r[#r + 1] = 'offline ' .. (p[2] or '-')
    end
end

return r
