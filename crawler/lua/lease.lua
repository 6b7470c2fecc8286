-- lease.lua: lease up to COUNT requests to a node. Entries move into the
-- node's held hash, so they are never only in a node's memory. Renews the
-- node's deadline. Politeness (see _polite.lua): a request is handed out
-- only when its domain has a free concurrency slot and its delay has passed;
-- requests of a domain that is not ready are parked in the domain's own list
-- and served when it is, so they never hold up other domains.
--
-- Order: first the parked requests of domains that became ready, then the
-- priority queues, highest priority first, FIFO within a priority. With
-- other nodes live, a node takes at most its fair share of a domain's slots
-- (concurrency / live nodes, at least 1).
--
-- Every key is declared. The caller declares the park lists of the domains
-- that may be ready (the first of {N}:parked) and of those in the node's
-- inbox. A request to park whose domain's list is not declared goes to the
-- node's inbox, {N}:parkin:<node>, and the call returns the inbox's domains:
-- the next call declares their lists and moves it there first.
--
-- KEYS[1] {N}:stats   KEYS[2] {N}:prios   KEYS[3] {N}:nodes
-- KEYS[4] {N}:held:<node>   KEYS[5] {N}:control   KEYS[6] {N}:parkin:<node>
-- KEYS[7..] {N}:q:<prio> for each priority in ARGV[6..], same order, then
--           {N}:park:<d> for ARGV[4] domains
-- The last seven KEYS: the politeness keys (_polite.lua)
-- ARGV[1] node id   ARGV[2] count   ARGV[3] lease length in ms
-- ARGV[4] number of park lists declared   ARGV[5] politeness policy (JSON)
-- ARGV[6..] priorities to try, highest first
--
-- A request whose domain is ready within the policy's lease-ahead time (la
-- ms; a domain with a delay, one paused) is handed out ahead, with the time
-- to wait before sending it: one call then serves every domain of a slow,
-- polite crawl that comes due within that time, not one domain a call.
--
-- Returns {more, live, backoff version, Redis ms, n, domain 1..n, lease id,
-- entry, hold, lease id, entry, hold, ...}: the n domains of the inbox;
-- hold is wait * 4 + holds * 2 + report: wait the ms to wait before sending
-- the request, holds 1 when its lease holds its domain until the start is
-- reported (the domain has a delay), report 1 when the node must report the
-- request's start (a delay, or a page budget); more is 1 when the scan
-- stopped at its limit with work left; live is the number of live nodes
-- (the fair share's divisor); the backoff version changes when a domain is
-- paused (as commit.lua returns it).
-- Returns {-1} while the crawl is paused (nothing is leased), {-2} once
-- CLOSESPIDER_PAGECOUNT requests were handed out (the policy's pc).
-- The deadline comes from Redis's clock, never the node's.
local stats, prios, nodes, held = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if redis.call('HGET', KEYS[5], 'paused') == '1' then
  return {-1}
end
local node, want, lease_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local inbox, nprios, nparks = KEYS[6], #ARGV - 5, tonumber(ARGV[4])
local now = p_time()
p_init(ARGV[5], now)
p_declare_parks(7 + nprios, nparks)
-- CLOSESPIDER_PAGECOUNT for the whole cluster: first deliveries are
-- counted ('granted'); once it is reached nothing more is handed out, and
-- {-2} tells the node to close with Scrapy's reason.
local granted = 0
if P.pc > 0 then
  local left = P.pc - tonumber(redis.call('HGET', stats, 'granted') or '0')
  if left <= 0 then return {-2} end
  want = math.min(want, left)
end
redis.call('ZADD', nodes, now + lease_ms, node)

-- Fair shares: while other nodes are live, a node holds at most its share
-- of a domain's concurrency slots, so the node that commits first cannot
-- take every slot back at once and leave the others nothing to fetch.
local live = redis.call('ZCOUNT', nodes, now, '+inf')
local mine = nil  -- this node's leases per domain, read when first needed
-- The leases of this call: held value, entry, hold, wait and domain of
-- each, numbered and written to the held hash at the end (ids follow
-- lease_seq, written once).
local t_value, t_entry, t_hold, t_wait, t_dom = {}, {}, {}, {}, {}
local waits = false  -- some lease of this call waits (they are then sorted)
local function my_turn(d, s)
  if live <= 1 then return true end
  local share = math.max(1, math.ceil(s.conc / live))
  -- This node's leases of d are among d's busy ones (this call's included):
  -- under its share without reading the held hash.
  if s.busy < share then return true end
  if not mine then
    mine = {}
    for _, v in ipairs(redis.call('HVALS', held)) do
      local hd = string.sub(v, 1, 2) ~= '@|' and p_held_domain(v)
      if hd then mine[hd] = (mine[hd] or 0) + 1 end
    end
    for _, hd in pairs(t_dom) do
      mine[hd] = (mine[hd] or 0) + 1
    end
  end
  return (mine[d] or 0) < share
end

local out = {0, live, tonumber(redis.call('HGET', stats, 'backoff_ver') or '0'), now}
local got = 0
local function lease_one(prio, entry, report, d, wait, holds)
  wait = wait or 0
  got = got + 1
  t_value[got], t_entry[got] = prio .. '|' .. entry, entry
  t_hold[got], t_wait[got], t_dom[got] = wait * 4 + (holds or 0) * 2 + report, wait, d
  if wait > 0 then waits = true end
  if mine and d then mine[d] = (mine[d] or 0) + 1 end
  if P.pc > 0 and p_first(entry) then granted = granted + 1 end
end

-- A first delivery of a domain whose page budget is spent is dropped
-- (counted in the stats' budget_dropped), not leased.
local dropped = 0
local function within_budget(s, d, first)
  if p_grant(s, d, first) then return true end
  dropped = dropped + 1
  return false
end

-- Take a slot of d for a request and lease it: its start must be reported
-- if the domain has a delay, or if the request counts against its budget
-- (one that ends unsent, e.g. refused by robots.txt, gives its page back);
-- it waits until the domain is ready.
local function take(prio, entry, s, d, first)
  -- Whole ms (a delay times its jitter is not), rounded up: never early.
  local wait = math.max(0, math.ceil(p_ready_at(s) - now))
  local holds = p_take(s, lease_ms)
  local report = holds
  if first and (P.pc > 0 or p_counts(s, d, true)) then report = 1 end
  lease_one(prio, entry, report, d, wait, holds)
end

-- Park a request of domain d: in its list if declared, else in the inbox.
local inboxed = {}
local function park(d, value)
  local key = p_park_key(d)
  if key then
    redis.call('RPUSH', key, value)
  else
    redis.call('RPUSH', inbox, value)
    inboxed[d] = true
  end
  p_state(d).parked = true
end

-- 0. The inbox of the last call goes to its domains' park lists.
if redis.call('EXISTS', inbox) == 1 then
  local waiting = redis.call('LRANGE', inbox, 0, -1)
  redis.call('DEL', inbox)
  for _, v in ipairs(waiting) do
    park(p_held_domain(v) or '', v)
  end
end

-- 1. Parked requests of domains that are ready now (or within la), of those declared.
-- (More than want of them: this node may be at its fair share of some.)
local soon = now + (P.la or 0)
local ready = redis.call('ZRANGEBYSCORE', P_PARKED, '-inf', soon, 'LIMIT', 0, want * 2 + 32)
for _, d in ipairs(ready) do
  if got >= want then break end
  local list = p_park_key(d)
  if list then
    local s = p_state(d)
    local popped = 0
    while got < want and popped < want * 4 + 1000 and p_ready_by(s, soon) and my_turn(d, s) do
      local v = redis.call('LPOP', list)
      if not v then break end
      popped = popped + 1
      local prio, entry = string.match(v, '^([^|]*)|(.*)$')
      local first = p_first(entry)
      if within_budget(s, d, first) then take(prio, entry, s, d, first) end
    end
    if redis.call('LLEN', list) == 0 and not inboxed[d] then
      redis.call('ZREM', P_PARKED, d)
      s.parked = false
    end
  end
end

-- 2. The priority queues. A request whose domain is not ready (or has
-- requests parked already) joins the domain's parked list. The scan is
-- bounded so one call stays short.
local scanned, limit = 0, want * 4 + 1000
for k = 6, #ARGV do
  if got >= want or scanned >= limit then break end
  local prio, queue = ARGV[k], KEYS[k + 1]
  while got < want and scanned < limit do
    local entries = redis.call('LPOP', queue, math.min(want - got, limit - scanned))
    if not entries then break end
    local domains = {}
    for j, entry in ipairs(entries) do domains[j] = p_entry_domain(entry) end
    p_states(domains)
    for j, entry in ipairs(entries) do
      scanned = scanned + 1
      local d = domains[j]
      if d == nil then
        lease_one(prio, entry, 0)  -- not an entry the node can read: it dead-letters it
      else
        local s, first = p_state(d), p_first(entry)
        if p_spent(s, d, first) then
          dropped = dropped + 1  -- its domain's budget is spent: not parked
        elseif not s.parked and p_ready_by(s, soon) and my_turn(d, s) then
          if within_budget(s, d, first) then take(prio, entry, s, d, first) end
        else
          park(d, prio .. '|' .. entry)
        end
      end
    end
  end
  if redis.call('LLEN', queue) == 0 then
    redis.call('ZREM', prios, prio)
  elseif got < want then
    out[1] = 1
  end
end
p_save()
if granted > 0 then redis.call('HINCRBY', stats, 'granted', granted) end
if dropped > 0 then
  redis.call('HINCRBY', stats, 'queued', -dropped)
  redis.call('HINCRBY', stats, 'budget_dropped', dropped)
end
local domains = {}
for d in pairs(inboxed) do domains[#domains + 1] = d end
out[#out + 1] = #domains
for _, d in ipairs(domains) do out[#out + 1] = d end
if got > 0 then
  -- Numbered in the order they may be sent (soonest first, then as leased):
  -- a node hands its requests out in lease order (crawler.starts).
  local order = {}
  for j = 1, got do order[j] = j end
  if waits then
    table.sort(order, function(a, b)
      if t_wait[a] ~= t_wait[b] then return t_wait[a] < t_wait[b] end
      return a < b
    end)
  end
  local seq0 = tonumber(redis.call('HGET', stats, 'lease_seq') or '0')
  local pending = {}
  for j, k in ipairs(order) do
    local id = tostring(seq0 + j)
    pending[#pending + 1] = id
    pending[#pending + 1] = t_value[k]
    out[#out + 1] = id
    out[#out + 1] = t_entry[k]
    out[#out + 1] = t_hold[k]
  end
  for j = 1, #pending, 1000 do
    redis.call('HSET', held, unpack(pending, j, math.min(j + 999, #pending)))
  end
  redis.call('HSET', stats, 'lease_seq', seq0 + got)
  redis.call('HINCRBY', stats, 'queued', -got)
  redis.call('HINCRBY', stats, 'leased', got)
end
return out
