-- due_peek.lua: pages due again now (crawler.recrawl), without changing
-- anything; due_move.lua moves them once their queue keys are known.
--
-- KEYS[1] {N}:due (ZSET fingerprint -> due ms)  KEYS[2] {N}:duereq (HASH)
-- ARGV[1] how many at most
-- Returns a flat array: fingerprint, "<prio>|<entry>", ... (a fingerprint
-- whose request is missing comes with "").
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local fps = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
if #fps == 0 then return {} end
local values = redis.call('HMGET', KEYS[2], unpack(fps))
local out = {}
for j, fp in ipairs(fps) do
  out[#out + 1] = fp
  out[#out + 1] = values[j] or ''
end
return out
