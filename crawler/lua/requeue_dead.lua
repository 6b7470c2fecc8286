-- requeue_dead.lua: move dead letters back into the frontier, each once,
-- bypassing the seen-set (their URLs are in it already).
--
-- KEYS[1] {N}:dead   KEYS[2] {N}:stats   KEYS[3] {N}:prios
-- KEYS[4] {N}:deadpages (a recrawled page's letter: see commit.lua)
-- KEYS[5..] priority queues, referenced by index below
-- ARGV: per letter 5 values: the dead letter exactly as stored,
--       queue key index, priority, entry JSON, and for a recrawled page's
--       letter the count of its latest letter as the caller read it (0 for
--       others)
--
-- Returns the number of letters requeued (a letter another requeue already
-- took is skipped, and so is a page's whose latest letter is not the one
-- read: the page failed again meanwhile, and its newer letter stays).
local dead, stats, prios, deadpages = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local moved = 0
local function latest_of(letter)
  local page = string.match(letter, '^{"page": "(%x+)", "count": ')
  local latest = page and redis.call('HGET', deadpages, page)
  if latest and string.sub(latest, 1, 1) == '=' then
    return page, tonumber(string.match(latest, '^={"page": "%x+", "count": (%d+)'))
  end
end
for k = 1, #ARGV, 5 do
  local page, count = latest_of(ARGV[k])
  if page and count ~= tonumber(ARGV[k + 4]) then
    -- failed again since it was read: left for the next requeue
  elseif redis.call('LREM', dead, 1, ARGV[k]) == 1 then
    -- A page's first letter leaves the list: its latest goes too, so the
    -- page's next failing revisit is listed again (commit.lua).
    if page then redis.call('HDEL', deadpages, page) end
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
