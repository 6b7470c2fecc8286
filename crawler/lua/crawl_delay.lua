-- crawl_delay.lua: record a robots.txt's Crawl-delay for a domain. A domain
-- (download slot: a host name) has one robots.txt per scheme and port
-- (http:// and https://, a second port), each read on its own: the delay of
-- each is kept as it was last read, and the domain's is the longest of
-- them. (The last one read replaced the others' delay; then the longest
-- ever read was kept, so a robots.txt read again that asked for less, or
-- for none, never lowered it.) One that could not be fetched (-1) keeps
-- the delay it asked for before (none if it was never read).
-- A field present in dcrawl, even 0, means the domain's robots.txt is known.
--
-- KEYS[1] {N}:dcrawl   KEYS[2] {N}:dcrawlsite
-- ARGV[1] domain   ARGV[2] site (scheme://netloc)
-- ARGV[3] its Crawl-delay in ms (0: none; -1: robots.txt could not be fetched)
--
-- Returns the domain's Crawl-delay in ms as stored.
local raw = redis.call('HGET', KEYS[2], ARGV[1])
local sites = raw and cjson.decode(raw) or {}
local new = tonumber(ARGV[3])
if new >= 0 or sites[ARGV[2]] == nil then
  sites[ARGV[2]] = math.max(new, 0)
end
local longest = 0
for _, ms in pairs(sites) do
  if ms > longest then longest = ms end
end
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(sites))
redis.call('HSET', KEYS[1], ARGV[1], longest)
return longest
