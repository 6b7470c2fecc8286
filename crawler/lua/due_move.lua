-- due_move.lua: move pages due again into the frontier (crawler.recrawl),
-- past the seen-set; another node that moved one first wins (checked here).
--
-- KEYS[1] {N}:due  KEYS[2] {N}:duereq  KEYS[3] {N}:prios  KEYS[4] {N}:stats
-- KEYS[5..] the queues of the priorities below
-- ARGV: per page: fingerprint, KEYS index of its queue ("" for none: its
-- request is missing, the fingerprint is only dropped)
-- Returns how many requests were queued.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local moved = 0
for j = 1, #ARGV, 2 do
  local fp, q = ARGV[j], ARGV[j + 1]
  local due = redis.call('ZSCORE', KEYS[1], fp)
  if due and tonumber(due) <= now then
    local value = redis.call('HGET', KEYS[2], fp)
    if value and q ~= '' then
      local prio, entry = string.match(value, '^([^|]*)|(.*)$')
      redis.call('RPUSH', KEYS[tonumber(q)], entry)
      redis.call('ZADD', KEYS[3], -tonumber(prio), prio)
      moved = moved + 1
    end
    redis.call('ZREM', KEYS[1], fp)
    redis.call('HDEL', KEYS[2], fp)
  end
end
if moved > 0 then
  redis.call('HINCRBY', KEYS[4], 'queued', moved)
  redis.call('HINCRBY', KEYS[4], 'revisits_queued', moved)
end
return moved
