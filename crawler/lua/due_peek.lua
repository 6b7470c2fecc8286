-- due_peek.lua: pages due again now (crawler.recrawl), without changing
-- anything; due_move.lua moves them once their queue keys are known.
--
-- KEYS[1] {N}:due (ZSET "<prio>|<entry>" -> due, ms on Redis's clock)
-- ARGV[1] how many at most
-- Returns the due members, soonest first.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
