-- requeue_held.lua: put a node's held entries back into the frontier.
-- Used for an expired node (mode "expired": only if its deadline has passed
-- by Redis's clock, counting one more delivery per entry that reached the
-- downloader, so that prefetched requests never started are not blamed for a
-- crash, dead-lettering an entry once it reaches MAX deliveries) and for a node handing back work it
-- has not started (mode "release": no delivery counted).
--
-- KEYS[1] {N}:stats   KEYS[2] {N}:prios   KEYS[3] {N}:nodes
-- KEYS[4] {N}:held:<node>   KEYS[5] {N}:dead   KEYS[6] NAME:start_urls
-- KEYS[7] {N}:commitseq ("began:<node>": the highest lease id of the node's
--          requests that reached the downloader and its concurrency, see
--          commit.lua)
-- KEYS[8] {N}:parkin:<node> (its park inbox, see lease.lua)
-- KEYS[9..] priority queues, referenced by index below, then the park lists
--           of the entries' domains
-- The last seven KEYS: the politeness keys (_polite.lua)
-- ARGV[1] node id   ARGV[2] mode   ARGV[3] max deliveries
-- ARGV[4] politeness policy (JSON, see _polite.lua)
-- ARGV[5] KEYS index of the first park list, ARGV[6] how many
-- ARGV[7] 1: every entry the node holds (not some of them): also move the
--         node's park inbox to the park lists
-- ARGV[8..] per entry: lease id, queue key index (0 for a raw seed), and
--         the end of the hold its lease put on its domain (ms, Redis's
--         clock; 0 if not known or none)
--
-- Each entry frees its domain's concurrency slot. A released entry was not
-- sent, but may have been held as its domain's next request: the domain
-- waits one delay from now, which keeps the delay whatever the entry was,
-- or longer while another request of it holds it (leased ahead, or sent).
--
-- Returns {requeued, dead_lettered}, or {-1, 0} if the node is alive again.
local stats, prios, nodes, held, dead, start_urls =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local node, mode, max = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now = p_time()
p_init(ARGV[4], now)
p_declare_parks(tonumber(ARGV[5]), tonumber(ARGV[6]))
if mode == 'expired' then
  local deadline = redis.call('ZSCORE', nodes, node)
  if deadline and tonumber(deadline) > now then
    return {-1, 0}
  end
end

-- "began:<node>" is "<highest lease id started>|<window>": requests are
-- started in lease order, and up to <window> (the node's concurrency) may
-- have started after its last report. Those count too: a request that kills
-- its node the moment it arrives is never reported, and must still count.
local report = redis.call('HGET', KEYS[7], 'began:' .. node) or '0|0'
local began, window = string.match(report, '^(%d+)|(%d+)$')
began, window = tonumber(began or 0), tonumber(window or 0)
-- Those only inferred to have started (above the report) may not have: with
-- a window above 1 they never reach MAX on that count (a request on its
-- last delivery runs alone, under a window of 1, and then counts in full).
local later = {}
for k = 8, #ARGV, 3 do
  if tonumber(ARGV[k]) > began then later[#later + 1] = tonumber(ARGV[k]) end
end
table.sort(later)
local reported, inferred = began, began
if window > 0 and #later > 0 then inferred = later[math.min(window, #later)] end
local requeued, deads, gone = 0, 0, 0
for k = 8, #ARGV, 3 do
  local value = redis.call('HGET', held, ARGV[k])
  if value then
    local prio, deliveries, body = string.match(value, '^([^|]*)|(%d+)|(.*)$')
    local dom = p_held_domain(value)
    if prio ~= '@' and dom then
      local s = p_state(dom)
      local others, held_until, held = s.busy > 1, s.next, s.held
      local own = p_own_hold(s, tonumber(ARGV[k + 2]))  -- this entry's hold
      p_release(dom)
      if mode == 'release' then
        p_started(dom, 1)
        if others and held_until > s.next and not own then
          -- Another request of the domain is out or leased ahead: its hold
          -- (or its start's delay) stays.
          s.next, s.held = held_until, held
        elseif p_delayed(s) then
          -- Nothing is leased ahead for the delay from now: the node that
          -- handed it back (its downloader busy) would take it again at once.
          s.held = true
        end
      end
    end
    if prio == '@' then
      -- A raw seed goes back into a key of the type it came from (lease_raw.lua).
      if deliveries == '1' then
        redis.call('SADD', start_urls, body)
      elseif deliveries == '2' then
        local score, member = string.match(body, '^([^|]*)|(.*)$')
        redis.call('ZADD', start_urls, score, member)
      else
        redis.call('RPUSH', start_urls, body)
      end
      requeued = requeued + 1
    elseif prio == nil then
      redis.call('RPUSH', dead, cjson.encode({reason = 'malformed held entry', entry = value,
        node = node, time = now / 1000}))
      deads = deads + 1
    else
      local d, id = tonumber(deliveries), tonumber(ARGV[k])
      if mode == 'expired' and id <= reported then
        d = d + 1
      elseif mode == 'expired' and id <= inferred and (window == 1 or d + 1 < max) then
        d = d + 1
      end
      if mode == 'expired' and d >= max then
        redis.call('RPUSH', dead, cjson.encode({
          reason = 'delivered ' .. d .. ' times to nodes that died holding it (poison request?)',
          entry = string.match(body, '^[^|]*|(.*)$') or body, node = node, time = now / 1000}))
        deads = deads + 1
      else
        -- Back at the head of the line: it was taken before what is there
        -- now. For a domain with requests parked (waiting for its delay or
        -- a free slot), that line is its park list, served before the queues.
        if dom and d == 0 then  -- unsent: not a page
          p_ungrant(p_state(dom), dom)
          if P.pc > 0 then P_UNGRANTED = P_UNGRANTED + 1 end
        end
        if dom and p_state(dom).parked and p_park_key(dom) then
          redis.call('LPUSH', p_park_key(dom), prio .. '|' .. d .. '|' .. body)
        else
          redis.call('LPUSH', KEYS[tonumber(ARGV[k + 1])], d .. '|' .. body)
          redis.call('ZADD', prios, -tonumber(prio), prio)
        end
        redis.call('HINCRBY', stats, 'queued', 1)
        requeued = requeued + 1
      end
    end
    redis.call('HDEL', held, ARGV[k])
    gone = gone + 1
  end
end
-- The inbox: requests parked, never leased (still counted queued).
if ARGV[7] == '1' and redis.call('EXISTS', KEYS[8]) == 1 then
  local left = {}
  for _, v in ipairs(redis.call('LRANGE', KEYS[8], 0, -1)) do
    local dom = p_held_domain(v)
    local key = dom and p_park_key(dom)
    if key then
      redis.call('RPUSH', key, v)
      p_state(dom).parked = true
    else
      left[#left + 1] = v  -- not declared: stays for the next call
    end
  end
  redis.call('DEL', KEYS[8])
  if #left > 0 then redis.call('RPUSH', KEYS[8], unpack(left)) end
end
p_save()
if gone > 0 then redis.call('HINCRBY', stats, 'leased', -gone) end
if deads > 0 then redis.call('HINCRBY', stats, 'dead', deads) end
-- A node handing back everything (it leaves), or reclaimed, leaves the node
-- list once it holds nothing; one handing back some of its leases stays.
if ARGV[7] == '1' and redis.call('HLEN', held) == 0 and redis.call('EXISTS', KEYS[8]) == 0 then
  redis.call('ZREM', nodes, node)
end
return {requeued, deads}
