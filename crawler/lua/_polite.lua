-- _polite.lua: per-domain politeness state shared by the scripts that hand
-- out, finish and return requests. crawler/scripts.py puts it in front of
-- them; KEYS[1] must be the crawl's {N}:stats key and the last six KEYS the
-- keys below from {N}:parked to {N}:dauto, in that order. The park lists a
-- script may touch are declared in KEYS too (p_declare_parks).
--
--   {N}:park:<d>   LIST  "<prio>|<entry>" of domain d, waiting for d to be ready
--   {N}:parked     ZSET  domain -> when it may be served next (ms; P_BLOCKED
--                        while it has no free concurrency slot)
--   {N}:dnext      HASH  domain -> no lease before this (ms): the delay after
--                        its last request started, or, negated, the hold of
--                        a request leased but not yet started (its lease's
--                        length from when it was leased)
--   {N}:dbusy      HASH  domain -> requests leased and not yet finished
--   {N}:dbackoff   HASH  domain -> "<until ms>|<level>" after a 429/503
--   {N}:dcrawl     HASH  domain -> robots.txt Crawl-delay (ms)
--   {N}:dauto      HASH  domain -> AutoThrottle delay (ms)
--   {N}:dpages     HASH  domain -> requests handed out for the first time,
--                        of a domain with a page budget
--
-- The policy P (JSON from crawler.politeness.Policy.to_lua): d delay ms,
-- c concurrency, o per-domain overrides {d: [delay ms|-1, conc|-1]}, at
-- AutoThrottle on, as/ax its start/max delay ms, tc its target concurrency,
-- bb/bx backoff base/max ms, rb 1 with ROBOTSTXT_OBEY, mp the page budget
-- of every domain (0: none; o[d][3] a domain's own, -1: the default), pc
-- CLOSESPIDER_PAGECOUNT for the crawl (or this partition's share; 0: none).
local P_TAG = string.match(KEYS[1], '^(.-}):')
-- The last seven KEYS, in this order (crawler.frontier.polite_keys).
local P_PARKED, P_NEXT, P_BUSY, P_BACKOFF, P_CRAWL, P_AUTO, P_PAGES =
  unpack(KEYS, #KEYS - 6, #KEYS)
local P_BLOCKED = 9007199254740991
local P_BACKOFF_WINDOW = 60000
local P, P_now, P_S = nil, 0, {}

local function p_time()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Whether any domain has a page budget (else the budget checks cost nothing).
local P_BUDGETS = false

local function p_init(policy, now)
  P = cjson.decode(policy)
  P_now = now
  P_BUDGETS = P.mp > 0
  for _, o in pairs(P.o) do
    if o[3] >= 0 then P_BUDGETS = true end
  end
end

-- Whether an entry ("<deliveries>|...") is its request's first delivery.
local function p_first(entry)
  return string.sub(entry, 1, 2) == '0|'
end

-- The park lists of domains, {N}:park:<d>, as the caller declared them in
-- KEYS: domain -> key (p_declare_parks). A script touches no other.
local P_PARK = {}
local function p_declare_parks(first, n)
  for j = 0, n - 1 do
    local key = KEYS[first + j]
    P_PARK[string.sub(key, #P_TAG + 7)] = key
  end
end

local function p_park_key(d)
  return P_PARK[d]
end

-- The configured delay (ms) and concurrency of domain d.
local function p_conf(d)
  local delay, conc = P.d, P.c
  local o = P.o[d]
  if o then
    if o[1] >= 0 then delay = o[1] end
    if o[2] > 0 then conc = o[2] end
  end
  return delay, conc
end

-- The page budget of domain d, or nil.
local function p_budget(d)
  local o = P.o[d]
  if o and o[3] >= 0 then return o[3] end
  if P.mp > 0 then return P.mp end
  return nil
end

-- Whether a request of domain d (*first*: on its first delivery) counts
-- against the domain's budget.
local function p_counts(s, d, first)
  if not first or not P_BUDGETS or not p_budget(d) then return false end
  if s.pages == nil then
    s.pages = tonumber(redis.call('HGET', P_PAGES, d) or '0')
    s.granted = 0
  end
  return true
end

-- Whether d's budget is spent for such a request.
local function p_spent(s, d, first)
  return p_counts(s, d, first) and s.pages + s.granted >= p_budget(d)
end

-- Whether such a request of d may be handed out; if it counts, it is
-- counted (written by p_save).
local function p_grant(s, d, first)
  if not p_counts(s, d, first) then return true end
  if p_spent(s, d, first) then return false end
  s.granted = s.granted + 1
  return true
end

-- A request counted by p_grant went back unsent: the domain has it again.
local function p_ungrant(s, d)
  if p_counts(s, d, true) then s.granted = s.granted - 1 end
end

-- Whether a key exists, asked once per script run: the per-domain reads
-- of a politeness key that does not exist (no domain paused, none parked,
-- no robots.txt read yet) are skipped. Keys written during the run were
-- read for their domain first (p_state before any write).
local P_HAS = {}
local function p_has(key)
  local h = P_HAS[key]
  if h == nil then
    h = redis.call('EXISTS', key) == 1
    P_HAS[key] = h
  end
  return h
end

-- The state of domain d from what was read for it (dnext, dbusy, dcrawl).
local function p_make(d, v, busy, crawl)
  local delay, conc = p_conf(d)
  -- With ROBOTSTXT_OBEY, a domain whose robots.txt is not known yet gets
  -- one request at a time, so its Crawl-delay holds from the first request.
  local n = tonumber(v or '0')
  -- held: next is a hold, not a time the domain is known to be ready at
  local s = {next = math.abs(n), held = n < 0, busy = tonumber(busy or '0'), base = delay,
       -- as read: p_save writes only what changed, deletes only what is there
       next0 = v and tonumber(v), busy0 = busy and tonumber(busy),
       delay = delay, crawl = tonumber(crawl or '0'), conc = conc, bo = 0,
       unknown = crawl == false and P.rb == 1,
       parked = p_has(P_PARKED) and redis.call('ZSCORE', P_PARKED, d) ~= false,
       dirty = false}
  if P.at == 1 then
    s.delay = math.max(delay, tonumber(redis.call('HGET', P_AUTO, d) or P.as))
  end
  local bo = p_has(P_BACKOFF) and redis.call('HGET', P_BACKOFF, d)
  if bo then
    local untl = tonumber(string.match(bo, '^(%d+)'))
    if untl + P_BACKOFF_WINDOW < P_now then
      redis.call('HDEL', P_BACKOFF, d)
    else
      s.bo = untl
    end
  end
  P_S[d] = s
  return s
end

-- The state of domain d, read once per script run.
local function p_state(d)
  local s = P_S[d]
  if s then return s end
  local v = p_has(P_NEXT) and redis.call('HGET', P_NEXT, d)
  local busy = p_has(P_BUSY) and redis.call('HGET', P_BUSY, d)
  local crawl = p_has(P_CRAWL) and redis.call('HGET', P_CRAWL, d)
  return p_make(d, v, busy, crawl)
end

-- The states of the domains of a batch (nil entries skipped), read with
-- one HMGET per key rather than one HGET per domain and key.
local function p_states(domains)
  local want, once = {}, {}
  for _, d in pairs(domains) do
    if not P_S[d] and not once[d] then
      once[d] = true
      want[#want + 1] = d
    end
  end
  if #want < 2 then
    if want[1] then p_state(want[1]) end
    return
  end
  for first = 1, #want, 1000 do
    local part = {unpack(want, first, math.min(first + 999, #want))}
    local vs = p_has(P_NEXT) and redis.call('HMGET', P_NEXT, unpack(part))
    local bs = p_has(P_BUSY) and redis.call('HMGET', P_BUSY, unpack(part))
    local cs = p_has(P_CRAWL) and redis.call('HMGET', P_CRAWL, unpack(part))
    for j, d in ipairs(part) do
      p_make(d, vs and vs[j], bs and bs[j], cs and cs[j])
    end
  end
end

local function p_delayed(s)
  return s.delay > 0 or s.crawl > 0 or s.unknown
end

local function p_ready_at(s)
  if s.busy >= s.conc then return P_BLOCKED end
  return math.max(s.next, s.bo)
end

-- Whether domain s may have a request leased now, or ahead (ready by soon).
-- Never ahead of a hold: the request holding the domain may still start at
-- any moment before the hold ends, and the delay runs from that start.
local function p_ready_by(s, soon)
  if s.held and s.next > P_now then return p_ready_at(s) <= P_now end
  return p_ready_at(s) <= soon
end

-- A request of domain d is leased: it takes a concurrency slot, and for a
-- domain with a delay, no other is leased until it starts (or its lease ends).
-- Returns 1 when the node must report the start.
local function p_take(s, lease_ms)
  s.busy = s.busy + 1
  s.dirty = true
  if p_delayed(s) then
    s.next, s.held = P_now + lease_ms, true
    return 1
  end
  return 0
end

-- Whether the hold on domain s is the one a lease put on it that ends at
-- hold (Redis ms, as the node computed it from the lease reply's clock).
local function p_own_hold(s, hold)
  return s.held and hold ~= nil and s.next == hold
end

-- A request of domain d was sent (ago ms before now, by the node's clock;
-- the time its report took to arrive only makes the wait longer): the next
-- may start after the delay (times factor, the jitter the node drew), and
-- never before the Crawl-delay.
--
-- The start is when the node's downloader called the request's download
-- handler; it reaches the site later by the node's send path (a new
-- connection, a DNS lookup, a busy event loop), which the next request, sent
-- by another node on a warm connection, may not pay. A margin of a tenth of
-- the gap, at most P.sm ms (crawler.politeness.SEND_MARGIN), keeps the gap
-- the site sees: under load a site saw 0.358 s between two requests under a
-- 0.4 s Crawl-delay (CI, 3db44c0).
--
-- hold: the end of the hold this request's lease put on d (Redis ms; 0 or
-- nil: none or not known). A request can go out after its hold ran out (it
-- waited in its node's downloader, CONCURRENT_REQUESTS_PER_IP) and another
-- request of d was leased meanwhile: that one's hold stays, or a third
-- would be leased to go one delay after this start while the second may
-- still start at any moment. Once no hold is on d, a start never moves
-- the next request earlier than one reported before it.
local function p_started(d, factor, ago, hold)
  local s = p_state(d)
  local gap = math.max(s.delay * factor, s.crawl)
  -- +1: P_now is Redis's time floored to the ms, ago the node's truncated.
  local at = P_now - (ago or 0) + 1 + gap + math.floor(math.min(gap / 10, P.sm or 0))
  local holding = s.held and s.next > P_now
  if hold and hold > 0 then
    if holding and not p_own_hold(s, hold) then return end  -- another's hold
    if not holding then at = math.max(at, s.next) end
  end
  s.next = at
  s.held = false
  s.dirty = true
end

-- A request of domain d was leased and finished without being sent (robots.txt,
-- a cache hit, an offsite filter): the domain is free again at once.
-- Requests counted against CLOSESPIDER_PAGECOUNT given back (unsent).
local P_UNGRANTED = 0

-- hold as for p_started: only the request's own hold is lifted (nor,
-- once its hold ran out, another request's start's delay cut short).
local function p_unblock(d, hold)
  local s = p_state(d)
  if not hold or hold <= 0 or p_own_hold(s, hold) then
    if s.next > P_now then s.next = P_now end
    s.held = false
  end
  s.dirty = true
  p_ungrant(s, d)  -- not a page of its budget
  if P.pc > 0 then P_UNGRANTED = P_UNGRANTED + 1 end
end

-- A request of domain d is finished, returned or dead-lettered: its slot frees.
local function p_release(d)
  local s = p_state(d)
  if s.busy > 0 then s.busy = s.busy - 1 end
  s.dirty = true
end

-- Domain d answered 429/503: pause it for secs seconds (a Retry-After), or
-- (secs = -1) for an exponential backoff that doubles while the answers keep
-- coming. The level rises only for an answer after the pause ended: answers
-- to requests in flight together when the first came count as one (a burst
-- of 8 raised it 8 levels: a 600 s pause of a site that was fine again at
-- once), and a Retry-After keeps it. secs = -2: a page of d came back fine
-- after its pause, so the next backoff starts over.
local function p_backoff(d, secs)
  local s = p_state(d)
  local paused_until, level = 0, -1
  local prev = redis.call('HGET', P_BACKOFF, d)
  if prev then
    local untl, lvl = string.match(prev, '^(%d+)|(%d+)')
    paused_until = tonumber(untl)
    if paused_until + P_BACKOFF_WINDOW >= P_now then level = tonumber(lvl) end
  end
  if secs == -2 then
    if prev and paused_until <= P_now then redis.call('HDEL', P_BACKOFF, d) end
    return 0
  end
  local ms
  if secs >= 0 then
    level = math.max(level, 0)
    ms = secs * 1000
  else
    if paused_until <= P_now then level = level + 1 end
    level = math.max(level, 0)
    ms = P.bb * 2 ^ level
  end
  ms = math.floor(math.min(ms, P.bx))
  local untl = math.max(s.bo, P_now + ms)
  redis.call('HSET', P_BACKOFF, d, untl .. '|' .. level)
  -- Nodes re-read the pauses when this changes, to hold back requests of
  -- the domain they leased before it was paused.
  redis.call('HINCRBY', KEYS[1], 'backoff_ver', 1)
  s.bo = untl
  s.dirty = true
  return ms
end

-- AutoThrottle, as Scrapy computes it, from a latency (ms) any node measured.
local function p_latency(d, latency, ok)
  if P.at ~= 1 then return end
  local s = p_state(d)
  local old = tonumber(redis.call('HGET', P_AUTO, d) or P.as)
  local target = latency / P.tc
  local new = math.max(target, (old + target) / 2)
  new = math.min(math.max(s.base, new), P.ax)
  if not ok and new <= old then return end
  redis.call('HSET', P_AUTO, d, math.floor(new))
  s.delay = math.max(s.base, new)
end

-- dnext and dbusy hold the domains in flight, often fewer than Redis's
-- hash-max-ziplist-entries (128): Redis keeps such a hash as a list it
-- searches linearly, about 12% of Redis's CPU per page in the load test.
-- One field with a value longer than hash-max-ziplist-value (64) makes it
-- a hash table for good; it also keeps the key when no domain is in it.
local P_TABLE = string.rep('-', 80)
local P_MADE = {}
local function p_hset(key, fields)
  if #fields == 0 then return end
  if not P_MADE[key] then
    redis.call('HSETNX', key, '\0', P_TABLE)
    P_MADE[key] = true
  end
  for first = 1, #fields, 1000 do
    redis.call('HSET', key, unpack(fields, first, math.min(first + 999, #fields)))
  end
end

local function p_hdel(key, fields)
  for first = 1, #fields, 1000 do
    redis.call('HDEL', key, unpack(fields, first, math.min(first + 999, #fields)))
  end
end

-- Write back what changed, and reschedule parked domains. A field is
-- written only when its value changed and deleted only when it was there
-- (a domain without a delay has no dnext field: a call per page saved in
-- each of lease.lua and commit.lua); a past dnext is deleted when its
-- domain is next written. One HSET and one HDEL per key for all domains.
local function p_save()
  local next_set, next_del, busy_set, busy_del = {}, {}, {}, {}
  for d, s in pairs(P_S) do
    if s.dirty then
      if s.next > P_now then
        local stored = s.held and -s.next or s.next
        if stored ~= s.next0 then
          next_set[#next_set + 1] = d
          next_set[#next_set + 1] = stored
        end
      elseif s.next0 then
        next_del[#next_del + 1] = d
      end
      if s.busy > 0 then
        if s.busy ~= s.busy0 then
          busy_set[#busy_set + 1] = d
          busy_set[#busy_set + 1] = s.busy
        end
      elseif s.busy0 then
        busy_del[#busy_del + 1] = d
      end
    end
    if s.parked then
      redis.call('ZADD', P_PARKED, p_ready_at(s), d)
    end
    if s.granted and s.granted ~= 0 then
      redis.call('HINCRBY', P_PAGES, d, s.granted)
    end
  end
  p_hset(P_NEXT, next_set)
  p_hdel(P_NEXT, next_del)
  p_hset(P_BUSY, busy_set)
  p_hdel(P_BUSY, busy_del)
  if P_UNGRANTED > 0 then redis.call('HINCRBY', KEYS[1], 'granted', -P_UNGRANTED) end
end

-- The domain of an entry "<deliveries>|<domain>|<json>", or of a held value
-- "<prio>|<deliveries>|<domain>|<json>".
-- An entry leaves its domain out when it is the host of its URL
-- (crawler.politeness.make_entry reads the host the same way): that case,
-- the common one, is matched first.
local P_URL_HOST = '%d+||{"url":"[^:"]*://([^/:?#"\\@]*)'
local P_ENTRY_HOST, P_HELD_HOST = '^' .. P_URL_HOST, '^[^|]*|' .. P_URL_HOST
local function p_entry_domain(entry)
  local host = string.match(entry, P_ENTRY_HOST)
  if host then return host end
  return string.match(entry, '^%d+|([^|]*)|')
end

local function p_held_domain(value)
  local host = string.match(value, P_HELD_HOST)
  if host then return host end
  return string.match(value, '^[^|]*|%d+|([^|]*)|')
end
