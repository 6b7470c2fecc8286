-- add_stats.lua: add a node's stats deltas to the cluster's stats, atomically.
--
-- KEYS[1] {N}:clusterstats
-- ARGV: name, delta, name, delta, ... (integers use HINCRBY, others
--       HINCRBYFLOAT; "M<value>" keeps the highest value: a max stat)
--
-- Returns the number of fields updated.
for k = 1, #ARGV, 2 do
  local delta = ARGV[k + 1]
  if string.sub(delta, 1, 1) == 'M' then
    local value = string.sub(delta, 2)
    local now = tonumber(redis.call('HGET', KEYS[1], ARGV[k]))
    if now == nil or tonumber(value) > now then
      redis.call('HSET', KEYS[1], ARGV[k], value)
    end
  elseif string.match(delta, '^-?%d+$') then
    redis.call('HINCRBY', KEYS[1], ARGV[k], delta)
  else
    redis.call('HINCRBYFLOAT', KEYS[1], ARGV[k], delta)
  end
end
return #ARGV / 2
