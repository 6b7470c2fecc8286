-- reserve.lua: a download the frontier never handed out (FilesPipeline,
-- ImagesPipeline, a callback's engine.download()) asks for its domain's
-- next turn, so the domain's delay holds across the cluster for it too.
-- It takes no concurrency slot (nothing would free one if its node died):
-- only the domain's delay, its Crawl-delay and a 429/503 pause.
--
-- KEYS[1] {N}:stats, then the politeness keys (_polite.lua)
-- ARGV[1] the politeness policy (JSON), ARGV[2] the domain (download slot),
-- ARGV[3] the delay factor the node drew (jitter)
--
-- Returns {0, 0} when the download may go now (the domain's next request
-- is then timed from now), or {ms, held}: wait ms and ask again; held 1
-- when what it waits for is a hold (a leased request not started yet,
-- which usually ends sooner: ask again soon).
local now = p_time()
p_init(ARGV[1], now)
local d, factor = ARGV[2], tonumber(ARGV[3])
local s = p_state(d)
if not p_delayed(s) and s.bo <= now then return {0, 0} end
local ready = math.max(s.next, s.bo)
if ready > now then
  return {ready - now, (s.held and s.next > now and s.next >= s.bo) and 1 or 0}
end
p_started(d, factor, 0)  -- its next turn is timed from now, as a lease's start
p_save()
return {0, 0}
