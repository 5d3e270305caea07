-- Typing, straight to the nodes of the other members' sessions: never
-- stored, and neither Kafka nor a worker sees it.
--
-- KEYS[1] exists while the sets of members and of blocked users are
-- whole; then for a group KEYS[2], its members; for a direct conversation
-- KEYS[2] and KEYS[3], the users the typer blocks and those the other
-- member blocks.
-- ARGV[1] "group" or "direct", ARGV[2] the typer, ARGV[3] the typing
-- frame, ARGV[4] the prefix of a user's sessions key, ARGV[5] the prefix
-- of a node's channel; for a direct conversation ARGV[6], the other
-- member.
--
-- Each node with sessions of the other members gets one F record
-- (ngx_chat_wire.h) naming them. In a direct conversation where either
-- blocks the other nothing is shown, as a blocker looks offline to the
-- one it blocks. Returns "sent", "forbidden" (the typer is no member of
-- the group), or "unknown" while the sets are written again (the caller
-- then goes the workers' way).

if redis.call('EXISTS', KEYS[1]) == 0 then
    return 'unknown'
end

local typer = ARGV[2]
local users

if ARGV[1] == 'group' then
    if redis.call('SISMEMBER', KEYS[2], typer) == 0 then
        return 'forbidden'
    end

    users = redis.call('SMEMBERS', KEYS[2])

else
    local other = ARGV[6]

    if other == typer
       or redis.call('SISMEMBER', KEYS[2], other) == 1
       or redis.call('SISMEMBER', KEYS[3], typer) == 1
    then
        return 'sent'
    end

    users = { other }
end

local sids = {}
local nodes = {}

for _, user in ipairs(users) do
    if user ~= typer then
        for _, v in ipairs(redis.call('HVALS', ARGV[4] .. user)) do
            local sp = string.find(v, ' ', 1, true)

            if sp then
                local node = string.sub(v, 1, sp - 1)
                local list = sids[node]

                if list == nil then
                    list = {}
                    sids[node] = list
                    nodes[#nodes + 1] = node
                end

                list[#list + 1] = string.sub(v, sp + 1)
            end
        end
    end
end

local frame = ARGV[3]

for _, node in ipairs(nodes) do
    redis.call('PUBLISH', ARGV[5] .. node,
               'F ' .. table.concat(sids[node], ',') .. ' ' .. #frame
               .. '\n' .. frame)
end

return 'sent'
