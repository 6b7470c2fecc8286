-- reserve.lua: a download the frontier never handed out (FilesPipeline,
-- ImagesPipeline, a callback's engine.download()) asks for its domain's
-- next turn, so the domain's delay holds across the cluster for it too.
-- It takes no concurrency slot (nothing would free one if its node died):
-- only the domain's delay, its Crawl-delay and a 429/503 pause.
--
-- KEYS[1] {N}:stats, then the politeness keys (_polite.lua)
-- ARGV[1] the politeness policy (JSON), ARGV[2] the domain (download slot),
-- ARGV[3] the delay factor the node drew (jitter), ARGV[4..] the ends of
-- the holds the asking node's own leased requests of the domain, not sent
-- yet, put on it (Redis ms, as commit.lua's start reports pass them)
--
-- Returns {0, 0} when the download may go now (the domain's next request
-- is then timed from now), or {ms, held}: wait ms and ask again; held 1
-- when what it waits for is a hold (a leased request not started yet,
-- which usually ends sooner: ask again soon); or {0, 2, gap}: the hold is
-- the asking node's own request, which may be queued behind this very
-- download in its downloader: this goes now, nothing is written (the hold
-- still keeps other nodes off), and the node sends its own request gap ms
-- after it (its start report then times the domain's next turn).
local now = p_time()
p_init(ARGV[1], now)
local d, factor = ARGV[2], tonumber(ARGV[3])
local s = p_state(d)
if not p_delayed(s) and s.bo <= now then return {0, 0} end
if s.held and s.next > now and s.bo <= now then
  for j = 4, #ARGV do
    if p_own_hold(s, tonumber(ARGV[j])) then
      return {0, 2, math.floor(math.max(s.delay * factor, s.crawl))}
    end
  end
end
local ready = math.max(s.next, s.bo)
if ready > now then
  return {ready - now, (s.held and s.next > now and s.next >= s.bo) and 1 or 0}
end
p_started(d, factor, 0)  -- its next turn is timed from now, as a lease's start
p_save()
return {0, 0}
