-- reserve.lua: a download the frontier never handed out (FilesPipeline,
-- ImagesPipeline, a callback's engine.download()) asks for its domain's
-- next turn, so the domain's delay holds across the cluster for it too.
-- It takes no concurrency slot (nothing would free one if its node died):
-- only the domain's delay, its Crawl-delay and a 429/503 pause.
--
-- KEYS[1] {N}:stats, then the politeness keys (_polite.lua)
-- ARGV[1] the politeness policy (JSON), ARGV[2] the domain (download slot),
-- ARGV[3] the delay factor the node drew (jitter), ARGV[4] how long (ms) a
-- turn granted holds the domain at most, ARGV[5..] the ends of the holds
-- the asking node's own leased requests of the domain, not sent yet, put
-- on it (Redis ms, as commit.lua's start reports pass them)
--
-- Returns {0, 0} when the download may go now and nothing is to be
-- reported (the domain has no delay); {0, 3, hold}: it may go now, and
-- the domain is held until its start is reported (commit.lua's starts,
-- with this hold's end), as a leased request's is (p_take), for at most
-- ARGV[4] ms: the domain's next request is timed from when the download
-- really went, not from this grant (timed from the grant, a download
-- whose node reached its download handler late, its event loop busy, had
-- the next request go too soon after it); or {ms, held}: wait ms and ask
-- again; held 1 when what it waits for is a hold (a request not started
-- yet, which usually ends sooner: ask again soon); or {0, 2, gap}: the
-- hold is the asking node's own request, which may be queued behind this
-- very download in its downloader: this goes now, nothing is written (the
-- hold still keeps other nodes off), and the node sends its own request
-- gap ms after it, the send margin included as p_started adds it (its
-- start report then times the domain's next turn).
local now = p_time()
p_init(ARGV[1], now)
local d, factor, hold_ms = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local s = p_state(d)
if not p_delayed(s) and s.bo <= now then return {0, 0} end
if s.held and s.next > now and s.bo <= now then
  for j = 5, #ARGV do
    if p_own_hold(s, tonumber(ARGV[j])) then
      local gap = math.max(s.delay * factor, s.crawl)
      return {0, 2, math.floor(gap + math.min(gap / 10, P.sm or 0))}
    end
  end
end
local ready = math.max(s.next, s.bo)
if ready > now then
  return {ready - now, (s.held and s.next > now and s.next >= s.bo) and 1 or 0}
end
s.next, s.held = now + hold_ms, true
s.dirty = true
p_save()
return {0, 3, s.next}
