-- requeue_dead.lua: move dead letters back into the frontier, each once,
-- bypassing the seen-set (their URLs are in it already).
--
-- KEYS[1] {N}:dead   KEYS[2] {N}:stats   KEYS[3] {N}:prios
-- KEYS[4] {N}:deadpages (a recrawled page's letter: see commit.lua)
-- KEYS[5..] priority queues, referenced by index below
-- ARGV: per letter 4 values: the dead letter exactly as stored,
--       queue key index, priority, entry JSON
--
-- Returns the number of letters requeued (a letter another requeue already
-- took is skipped).
local dead, stats, prios, deadpages = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local moved = 0
for k = 1, #ARGV, 4 do
  if redis.call('LREM', dead, 1, ARGV[k]) == 1 then
    -- A page's first letter leaves the list: its latest goes too, so the
    -- page's next failing revisit is listed again (commit.lua).
    local page = string.match(ARGV[k], '^{"page": "(%x+)", "count": ')
    if page then
      local latest = redis.call('HGET', deadpages, page)
      if latest and string.sub(latest, 1, 1) == '=' then redis.call('HDEL', deadpages, page) end
    end
    redis.call('RPUSH', KEYS[tonumber(ARGV[k + 1])], '0|' .. ARGV[k + 3])
    redis.call('ZADD', prios, -tonumber(ARGV[k + 2]), ARGV[k + 2])
    moved = moved + 1
  end
end
if moved > 0 then
  redis.call('HINCRBY', stats, 'queued', moved)
  redis.call('HINCRBY', stats, 'pushed', moved)
  redis.call('HINCRBY', stats, 'dead', -moved)
  redis.call('HINCRBY', stats, 'requeued', moved)
end
return moved
