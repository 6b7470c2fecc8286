-- lease_raw.lua: lease up to COUNT raw seeds from the scrapy-redis compatible
-- start_urls key, a LIST (RPOP), a SET (SPOP, REDIS_START_URLS_AS_SET) or a
-- ZSET (ZPOPMAX, highest score first as scrapy-redis reads it,
-- REDIS_START_URLS_AS_ZSET). They are held like requests ("@|<k>|<raw>", k
-- the key's type: 0 list, 1 set, 2 zset with raw "<score>|<member>") until the
-- node has validated them and queued the requests, so a crash loses none:
-- requeue_held.lua puts each back into a key of the type it came from.
--
-- KEYS[1] {N}:stats   KEYS[2] {N}:nodes   KEYS[3] {N}:held:<node>
-- KEYS[4] NAME:start_urls   KEYS[5] {N}:control
-- ARGV[1] node id   ARGV[2] count   ARGV[3] lease length in ms
--
-- Returns a flat array: lease id, raw line, ... (empty while paused)
local stats, nodes, held, start_urls = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local node, want, lease_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local kind = redis.call('TYPE', start_urls).ok
if (kind ~= 'list' and kind ~= 'set' and kind ~= 'zset') or want < 1
    or redis.call('HGET', KEYS[5], 'paused') == '1' then
  return {}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', nodes, now + lease_ms, node)
-- raws[i] is what the node decodes, helds[i] what goes back on requeue.
local raws, helds = {}, {}
if kind == 'list' then
  raws = redis.call('RPOP', start_urls, want) or {}
  for i, raw in ipairs(raws) do helds[i] = '@|0|' .. raw end
elseif kind == 'set' then
  raws = redis.call('SPOP', start_urls, want)
  for i, raw in ipairs(raws) do helds[i] = '@|1|' .. raw end
else
  local flat = redis.call('ZPOPMAX', start_urls, want)
  for i = 1, #flat, 2 do
    raws[#raws + 1] = flat[i]
    helds[#helds + 1] = '@|2|' .. flat[i + 1] .. '|' .. flat[i]
  end
end
local out = {}
for i, raw in ipairs(raws) do
  local id = redis.call('HINCRBY', stats, 'lease_seq', 1)
  redis.call('HSET', held, id, helds[i])
  out[#out + 1] = tostring(id)
  out[#out + 1] = raw
end
if #raws > 0 then
  redis.call('HINCRBY', stats, 'leased', #raws)
end
return out
