-- expired.lua: the nodes whose lease deadline has passed, by Redis's clock.
--
-- KEYS[1] {N}:nodes
-- ARGV[1] how many at most
--
-- Returns a list of node ids.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
