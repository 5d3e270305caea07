-- A node says it is alive until ARGV[2] (ms).
--
-- KEYS[1] the nodes. ARGV[1] the node.
-- Returns 0 when Redis did not know the node: it lost its data (or this is
-- the node's first word), and the node registers its sessions again.

local known = redis.call('ZSCORE', KEYS[1], ARGV[1])

redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])

return known and 1 or 0
