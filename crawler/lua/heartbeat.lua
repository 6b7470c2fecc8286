-- heartbeat.lua: renew every lease a node holds by moving its deadline, and
-- record its state for `scrapy status`.
--
-- KEYS[1] {N}:nodes   KEYS[2] {N}:nodeinfo   KEYS[3] {N}:nodebeat
-- KEYS[4] {N}:control   KEYS[5] {N}:run
-- ARGV[1] node id   ARGV[2] lease length in ms (0: the node is leaving)
-- ARGV[3] node info JSON
--
-- Returns {known, now_ms, paused, live, closed}: known is 0 when the node's
-- leases had already expired and been reclaimed by another node (its work
-- was handed out again); paused is 1 while the crawl is paused; live is the
-- number of nodes whose leases hold (as lease.lua counts them); closed is
-- the reason a node's spider raised CloseSpider with in this run, or ''.
local nodes, info, beat, control = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local known = redis.call('ZSCORE', nodes, ARGV[1]) and 1 or 0
if tonumber(ARGV[2]) > 0 then
  redis.call('ZADD', nodes, now + tonumber(ARGV[2]), ARGV[1])
end
redis.call('HSET', info, ARGV[1], ARGV[3])
redis.call('HSET', beat, ARGV[1], now)
local paused = redis.call('HGET', control, 'paused') == '1' and 1 or 0
local closed = redis.call('HGET', KEYS[5], 'closed') or ''
return {known, now, paused, redis.call('ZCOUNT', nodes, now, '+inf'), closed}
