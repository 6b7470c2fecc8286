-- add_stats.lua: add a node's stats deltas to the cluster's stats, atomically.
--
-- KEYS[1] {N}:clusterstats
-- ARGV: name, delta, name, delta, ... (integers use HINCRBY, others
--       HINCRBYFLOAT)
--
-- Returns the number of fields updated.
for k = 1, #ARGV, 2 do
  local delta = ARGV[k + 1]
  if string.match(delta, '^-?%d+$') then
    redis.call('HINCRBY', KEYS[1], ARGV[k], delta)
  else
    redis.call('HINCRBYFLOAT', KEYS[1], ARGV[k], delta)
  end
end
return #ARGV / 2
