-- heartbeat.lua: renew every lease a node holds by moving its deadline.
--
-- KEYS[1] {N}:nodes   KEYS[2] {N}:nodeinfo
-- ARGV[1] node id   ARGV[2] lease length in ms   ARGV[3] node info JSON
--
-- Returns {known, now_ms}: known is 0 when the node's leases had already
-- expired and been reclaimed by another node (its work was handed out again).
local nodes, info = KEYS[1], KEYS[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local known = redis.call('ZSCORE', nodes, ARGV[1]) and 1 or 0
redis.call('ZADD', nodes, now + tonumber(ARGV[2]), ARGV[1])
redis.call('HSET', info, ARGV[1], ARGV[3])
return {known, now}
