-- due_move.lua: move pages due again into the frontier (crawler.recrawl),
-- past the seen-set; another node that moved one first wins (checked here).
--
-- KEYS[1] {N}:due  KEYS[2] {N}:prios  KEYS[3] {N}:stats
-- KEYS[4..] the queues of the priorities below
-- ARGV: per page: its member "<prio>|<entry>", the KEYS index of its queue
-- Returns how many requests were queued.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local moved = 0
for j = 1, #ARGV, 2 do
  local member = ARGV[j]
  local due = redis.call('ZSCORE', KEYS[1], member)
  if due and tonumber(due) <= now then
    local prio, entry = string.match(member, '^([^|]*)|(.*)$')
    redis.call('RPUSH', KEYS[tonumber(ARGV[j + 1])], entry)
    redis.call('ZADD', KEYS[2], -tonumber(prio), prio)
    redis.call('ZREM', KEYS[1], member)
    moved = moved + 1
  end
end
if moved > 0 then
  redis.call('HINCRBY', KEYS[3], 'queued', moved)
  redis.call('HINCRBY', KEYS[3], 'revisits_queued', moved)
end
return moved
