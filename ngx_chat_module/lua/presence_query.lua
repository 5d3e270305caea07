-- The presence of users, now, as one watcher may see it.
--
-- KEYS[1] exists while the conversation sets are whole, KEYS[2] is the
-- watcher's conversations; then four keys for each user: its sessions,
-- its presence, its conversations, the users it blocks.
-- ARGV[1] "contacts" (only users who share a conversation with the
-- watcher are seen) or "everyone", ARGV[2] the watcher; then the users,
-- in the order of their keys.
-- Returns one string per user: "online -", "away -", "offline <ms>"
-- ("offline -" for a user never seen), or "hidden -" for a user the
-- watcher may not see (not a contact, or it blocks the watcher).

local contacts = ARGV[1] == 'contacts'
local ready = (not contacts) or redis.call('EXISTS', KEYS[1]) == 1
local watcher = ARGV[2]
local r = {}

for i = 3, #KEYS, 4 do
    local user = ARGV[3 + (i - 3) / 4]
    local seen = true

    if user ~= watcher then
        if redis.call('SISMEMBER', KEYS[i + 3], watcher) == 1 then
            seen = false
        elseif contacts then
            seen = ready
                   and redis.call('SINTERCARD', 2, KEYS[2], KEYS[i + 2],
                                  'LIMIT', 1) == 1
        end
    end

    if not seen then
        r[#r + 1] = 'hidden -'
    else
        local p = redis.call('HMGET', KEYS[i + 1], 'away', 'last_seen')

        if redis.call('HLEN', KEYS[i]) > 0 then
            r[#r + 1] = (p[1] == '1') and 'away -' or 'online -'
        else
            r[#r + 1] = 'offline ' .. (p[2] or '-')
        end
    end
end

return r
