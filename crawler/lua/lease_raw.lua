-- lease_raw.lua: lease up to COUNT raw seeds from the scrapy-redis compatible
-- start_urls list. They are held like requests ("@|0|<raw>") until the node
-- has validated them and queued the requests, so a crash loses none.
--
-- KEYS[1] {N}:stats   KEYS[2] {N}:nodes   KEYS[3] {N}:held:<node>
-- KEYS[4] NAME:start_urls   KEYS[5] {N}:control
-- ARGV[1] node id   ARGV[2] count   ARGV[3] lease length in ms
--
-- Returns a flat array: lease id, raw line, ... (empty while paused)
local stats, nodes, held, start_urls = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local node, want, lease_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
if redis.call('TYPE', start_urls).ok ~= 'list' or redis.call('HGET', KEYS[5], 'paused') == '1' then
  return {}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', nodes, now + lease_ms, node)
local raws = redis.call('RPOP', start_urls, want)
local out = {}
if raws then
  for _, raw in ipairs(raws) do
    local id = redis.call('HINCRBY', stats, 'lease_seq', 1)
    redis.call('HSET', held, id, '@|0|' .. raw)
    out[#out + 1] = tostring(id)
    out[#out + 1] = raw
  end
  redis.call('HINCRBY', stats, 'leased', #raws)
end
return out
