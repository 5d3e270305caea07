-- Announces users offline, each only if it is still due and has no device:
-- one that came back since registry_due.lua named it stays online.
--
-- KEYS[1] the users going offline. ARGV[1] now (ms), ARGV[2] the prefix
-- of a user's sessions key, ARGV[3] of its presence channel; then for each
-- user: the user and its presence event.

for i = 4, #ARGV, 2 do
    local user = ARGV[i]
    local due = redis.call('ZSCORE', KEYS[1], user)

    if due and tonumber(due) <= tonumber(ARGV[1]) then
        redis.call('ZREM', KEYS[1], user)

        if redis.call('HLEN', ARGV[2] .. user) == 0 then
            redis.call('PUBLISH', ARGV[3] .. user, ARGV[i + 1])
        end
    end
end

return 0
