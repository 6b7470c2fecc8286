-- lease.lua: lease up to COUNT requests to a node, highest priority first,
-- FIFO within a priority. Leased entries move into the node's held hash, so
-- they are never only in a node's memory. Renews the node's deadline.
--
-- KEYS[1] {N}:stats   KEYS[2] {N}:prios   KEYS[3] {N}:nodes
-- KEYS[4] {N}:held:<node>
-- KEYS[5] {N}:control
-- KEYS[6..] {N}:q:<prio> for each priority in ARGV[4..], same order
-- ARGV[1] node id   ARGV[2] count   ARGV[3] lease length in ms
-- ARGV[4..] priorities to try, highest first
--
-- Returns a flat array: lease id, entry, lease id, entry, ...; or {-1} while
-- the crawl is paused (nothing is leased).
-- The deadline comes from Redis's clock, never the node's.
local stats, prios, nodes, held = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if redis.call('HGET', KEYS[5], 'paused') == '1' then
  return {-1}
end
local node, want, lease_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', nodes, now + lease_ms, node)

local out = {}
local got = 0
for k = 4, #ARGV do
  if got >= want then break end
  local prio, queue = ARGV[k], KEYS[k + 2]
  local entries = redis.call('LPOP', queue, want - got)
  if entries then
    for _, entry in ipairs(entries) do
      local id = redis.call('HINCRBY', stats, 'lease_seq', 1)
      redis.call('HSET', held, id, prio .. '|' .. entry)
      out[#out + 1] = tostring(id)
      out[#out + 1] = entry
      got = got + 1
    end
  end
  if redis.call('LLEN', queue) == 0 then
    redis.call('ZREM', prios, prio)
  end
end
if got > 0 then
  redis.call('HINCRBY', stats, 'queued', -got)
  redis.call('HINCRBY', stats, 'leased', got)
end
return out
