-- A batch's delivery, all or nothing, fenced per partition: a worker that
-- lost a partition without noticing (frozen past its session timeout)
-- must not publish what its successor publishes again.
--
-- KEYS[1] the delivered marks, KEYS[2] the epochs (hashes of the topic and
-- group, field the partition), KEYS[3..] the chain keys of the nodes whose
-- heads move.
-- ARGV[1] np, then np triples: a partition, the epoch this worker took it
--   with (us), the last offset the batch answered in it (-1: none);
-- then nh, then nh triples: the index in KEYS of a node's chain key
--   (negative: its TTL is set again too, which the worker asks for once a
--   minute), a partition, the head of that chain now;
-- then pairs: a channel and a payload, published in that order.
--
-- A partition whose epoch in Redis is newer than ours is fenced: then
-- nothing is done and the fenced partitions are returned, so that the
-- worker drops their records and calls again with the rest. Otherwise the
-- epochs are taken (newer wins; missing: take it), the marks raised (never
-- lowered: a successor replays from the committed offset, below them),
-- the heads written (kept a day: the chain of a node that is gone), the
-- payloads published, and an empty list returned.

local np = tonumber(ARGV[1])
local fenced = {}

local epochs = {}

for i = 0, np - 1 do
    local p = ARGV[2 + 3 * i]
    local cur = redis.call('HGET', KEYS[2], p)

    if cur and tonumber(cur) > tonumber(ARGV[3 + 3 * i]) then
        fenced[#fenced + 1] = tonumber(p)
    end

    epochs[i] = cur
end

if #fenced > 0 then
    return fenced
end

for i = 0, np - 1 do
    local p, epoch = ARGV[2 + 3 * i], ARGV[3 + 3 * i]
    local mark = tonumber(ARGV[4 + 3 * i])

    if epochs[i] ~= epoch then
        redis.call('HSET', KEYS[2], p, epoch)
    end

    if mark >= 0 then
        local cur = tonumber(redis.call('HGET', KEYS[1], p))

        if cur == nil or cur < mark then
            redis.call('HSET', KEYS[1], p, ARGV[4 + 3 * i])
        end
    end
end

local a = 2 + 3 * np
local nh = tonumber(ARGV[a])
local touched = {}

for i = 0, nh - 1 do
    local k = tonumber(ARGV[a + 1 + 3 * i])

    if k < 0 then
        k = -k
        touched[k] = true
    end

    redis.call('HSET', KEYS[k], ARGV[a + 2 + 3 * i], ARGV[a + 3 + 3 * i])
end

for k in pairs(touched) do
    redis.call('EXPIRE', KEYS[k], 86400)
end

for i = a + 1 + 3 * nh, #ARGV, 2 do
    redis.call('PUBLISH', ARGV[i], ARGV[i + 1])
end

return {}
