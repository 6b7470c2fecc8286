-- crawl_delay.lua: record a robots.txt's Crawl-delay for a domain, keeping
-- the longest. A domain (download slot: a host name) has one robots.txt per
-- scheme and port (http:// and https://, a second port), each read on its
-- own: the last one read replaced the others' delay, and a robots.txt that
-- could not be fetched (0) lifted a Crawl-delay another one asked for.
-- A field present, even 0, means the domain's robots.txt is known.
--
-- KEYS[1] {N}:dcrawl
-- ARGV[1] domain   ARGV[2] Crawl-delay in ms (0: none)
--
-- Returns the domain's Crawl-delay in ms as stored.
local old = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '-1')
local new = tonumber(ARGV[2])
if new > old then
  redis.call('HSET', KEYS[1], ARGV[1], new)
  return new
end
return old
