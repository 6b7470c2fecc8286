-- commit.lua: store what a node produced, atomically, then acknowledge the
-- leases whose outputs these are. All or nothing: a crash before this script
-- leaves the leases held (they come back on expiry); after it, everything is
-- stored.
--
-- KEYS[1]  {N}:stats      KEYS[2] {N}:prios   KEYS[3] {N}:items
-- KEYS[4]  {N}:held:<node>  (the committing node's leases)
-- KEYS[5]  {N}:dead
-- KEYS[6..] seen shards and priority queues, referenced by index below
--
-- ARGV, in groups, each group led by its count:
--   pushes: count, then per request 5 values:
--           seen_key_index (0 = dont_filter, no check), fingerprint (int64 text),
--           queue_key_index, priority, entry ("<deliveries>|<json>")
--   items:  count, then per item: item id, item JSON (first write wins)
--   acks:   count, then lease ids of finished requests
--   raws:   count, then lease ids of consumed raw seeds (start_urls)
--   dead:   count, then per entry: lease id, dead-letter JSON
--
-- Returns {queued, duplicates, items_new, items_dup, acked}
local stats, prios, items, held, dead = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local i = 1
local queued, dups, new_fps = 0, 0, 0

local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  local seen_idx, fp = tonumber(ARGV[i]), ARGV[i + 1]
  local queue, prio, entry = KEYS[tonumber(ARGV[i + 2])], ARGV[i + 3], ARGV[i + 4]
  i = i + 5
  local fresh = 1
  if seen_idx > 0 then
    fresh = redis.call('SADD', KEYS[seen_idx], fp)
    new_fps = new_fps + fresh
  end
  if fresh == 1 then
    redis.call('RPUSH', queue, entry)
    redis.call('ZADD', prios, -tonumber(prio), prio)
    queued = queued + 1
  else
    dups = dups + 1
  end
end

local items_new, items_dup = 0, 0
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  if redis.call('HSETNX', items, ARGV[i], ARGV[i + 1]) == 1 then
    items_new = items_new + 1
  else
    items_dup = items_dup + 1
  end
  i = i + 2
end

local acked, released = 0, 0
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  acked = acked + redis.call('HDEL', held, ARGV[i])
  i = i + 1
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  released = released + redis.call('HDEL', held, ARGV[i])
  i = i + 1
end
local deads = 0
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  released = released + redis.call('HDEL', held, ARGV[i])
  redis.call('RPUSH', dead, ARGV[i + 1])
  deads = deads + 1
  i = i + 2
end

if queued > 0 then
  redis.call('HINCRBY', stats, 'queued', queued)
  redis.call('HINCRBY', stats, 'pushed', queued)
end
if new_fps > 0 then redis.call('HINCRBY', stats, 'seen', new_fps) end
if dups > 0 then redis.call('HINCRBY', stats, 'duplicates', dups) end
if items_new > 0 then redis.call('HINCRBY', stats, 'items', items_new) end
if items_dup > 0 then redis.call('HINCRBY', stats, 'items_dup', items_dup) end
if acked > 0 then redis.call('HINCRBY', stats, 'done', acked) end
if acked + released > 0 then redis.call('HINCRBY', stats, 'leased', -(acked + released)) end
if deads > 0 then redis.call('HINCRBY', stats, 'dead', deads) end
return {queued, dups, items_new, items_dup, acked}
