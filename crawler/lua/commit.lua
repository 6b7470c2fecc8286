-- commit.lua: store what a node produced, atomically, then acknowledge the
-- leases whose outputs these are. All or nothing: a crash before this script
-- leaves the leases held (they come back on expiry); after it, everything is
-- stored.
--
-- KEYS[1]  {N}:stats      KEYS[2] {N}:prios   KEYS[3] {N}:items
-- KEYS[4]  {N}:held:<node>  (the committing node's leases)
-- KEYS[5]  {N}:dead       KEYS[6] {N}:bloom  (Bloom filter metadata)
-- KEYS[7]  {N}:commitseq  (last commit sequence number applied, per node)
-- KEYS[8..] Bloom layers, priority queues and seen shards, by index below
-- The last seven KEYS: the politeness keys (_polite.lua)
--
-- ARGV[1] the commit's sequence number (0: not checked), ARGV[2] the node,
-- ARGV[3] "<id>|<window>": the highest lease id of the node's requests that
-- reached the downloader ("" if unchanged) and how many more may have
-- started since (its concurrency), kept as "began:<node>" in KEYS[7]: a
-- reclaim counts a delivery only for those (requeue_held.lua).
-- A node numbers its commits 1, 2, ... in the order it sends them and sends
-- one at a time; one whose number is not above the last applied was applied
-- already (its reply was lost) and changes nothing.
--
-- Then ARGV, in groups, each group led by its count:
--   bloom:  count of layer keys passed, then their KEYS indexes (layers 0..),
--           then base capacity and error rate (used when creating a layer)
--   pushes: count of requests to check in the Bloom filter, then the
--           JSON document of queues, [[queue key index, priority (text)],
--           ...], then the requests' heads and their strings: heads is 13
--           bytes per request, in the batch's order, four unsigned
--           big-endian numbers: position in queues (4 bytes), x (4), the
--           length of y (1) and of its entry (4); the strings follow as one
--           string, y then entry ("<deliveries>|<domain>|<json>") of each
--           request in that order (no number is parsed from text, and only
--           a new request's entry is cut out: a duplicate's never becomes a
--           Lua string).
--           y is "" for dont_filter; in exact mode x is the KEYS index of
--           the seen shard and y the int64 member (text); in Bloom mode
--           (layer keys passed) x is h1 and y h2 (text).
--           An entry "" (length 0) only marks its fingerprint seen, queuing nothing
--           (scrapy migrate); one already seen counts in the returned
--           duplicates, not in the duplicates stat.
--   items:  count, the KEYS index of {N}:itemlog (0 when count is 0), then
--           per item: item id, item JSON (first write wins; see below for
--           a JSON led by "!", "+" or "-"); a new item's id is appended to
--           the item log (read by export --follow)
--   policy: the politeness policy (JSON, see _polite.lua), not counted
--   starts: count, then per request sent: domain, delay factor (jitter),
--           how long before this call the node sent it (ms, its own clock),
--           the end of the hold its lease put on the domain (ms, Redis's
--           clock; 0 if none or not known)
--   unblocks: count, then per request finished unsent: domain, the end of
--           the hold its lease put on it (as for starts)
--   backoffs: count, then per 429/503 answer: domain, seconds (-1: exponential)
--   latencies: count, then per response: domain, latency ms, 1 if status 200
--   acks:   count, then lease ids of finished requests
--   raws:   count, then lease ids of consumed raw seeds (start_urls)
--   dead:   count, then (when not 0) the KEYS index of {N}:deadpages, then
--           per entry: lease id ("" for none), dead-letter JSON. A letter
--           led by {"page": "<hex>", "count": <n>, (a recrawl's revisit)
--           is the page's one letter, its count one more than the one
--           before: a page that keeps failing on its revisit schedule has
--           one letter, not one per revisit. The list keeps the page's
--           first letter where it is; {N}:deadpages has "=" and the latest
--           (readers show that one: crawler.commands.deadletters), so no
--           failure scans the list. (A letter stored before this, without
--           "=", is taken out of the list and the new one appended.)
--   revisits: count, then (when not 0) the KEYS index of {N}:due, then per
--           page due again: milliseconds from now, the lease id of the
--           request it was made from ("" for none), "<prio>|<entry>"
--           (crawler.recrawl). One whose lease this node no longer held
--           (expired and handed to another node, which fetches the page and
--           stores its own revisit) is not stored: the page would wait twice.
--
-- An item JSON led by "!<lease id>|" replaces the stored one (a changed
-- page's item, crawler.recrawl): when it differs, it is stored and logged
-- with its value (v), so a follower writes each version once. One led by
-- "+" is stored as usual (first write wins) and logged with its value too.
-- "-<lease id>|" (no JSON) removes the item: a position its changed page
-- no longer fills. Either only while this node holds that lease (or the
-- lease id is ""): one that expired (a node paused past its lease) was
-- handed to another node, whose newer version of the page stands; the
-- page is fetched again, so nothing is lost.
--
-- Finishing (acking, dead-lettering) a request frees its domain's slot.
--
-- Counted in stats: items_removed, items_stale (not stored: lease expired).
--
-- Returns {queued, duplicates, items_new, items_dup, acked, backoff version,
-- Redis time in ms, 0}, {queued, duplicates, items_new, items_dup, acked,
-- backoff version, 0, 1} for a commit applied before, the counts those of
-- its application if it was the node's last (kept as "counts:<node>" in
-- KEYS[7]: only the last can be sent again), else 0, or
-- {-1, needed} without changing anything if the Bloom filter has, or this
-- batch needs, more layers than were passed (the caller retries with them),
-- or {-2, layer, bytes} without changing anything if a layer this batch
-- needs is not allocated yet (the caller runs bloom_grow.lua and retries).
local stats, prios, items, held, dead = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local bloom = KEYS[6]
local seq, node, began = tonumber(ARGV[1]), ARGV[2], ARGV[3]
if seq > 0 and seq <= tonumber(redis.call('HGET', KEYS[7], node) or '0') then
  -- Applied before; only a newer start report (sent again with it) is taken
  -- (the same id with another window is newer: a request runs alone).
  if began ~= '' then
    local old = redis.call('HGET', KEYS[7], 'began:' .. node) or '0|0'
    if tonumber(string.match(began, '^(%d+)')) >= tonumber(string.match(old, '^(%d+)')) then
      redis.call('HSET', KEYS[7], 'began:' .. node, began)
    end
  end
  -- The counts of its application, if it was the node's last (the one
  -- whose reply can have been lost): the node counts them in its stats.
  local c = {0, 0, 0, 0, 0}
  local last = redis.call('HGET', KEYS[7], 'counts:' .. node)
  if last then
    local at, q, d, n, u, a = string.match(last, '^(%d+) (%d+) (%d+) (%d+) (%d+) (%d+)$')
    if tonumber(at) == seq then
      c = {tonumber(q), tonumber(d), tonumber(n), tonumber(u), tonumber(a)}
    end
  end
  local bo = tonumber(redis.call('HGET', stats, 'backoff_ver') or '0')
  return {c[1], c[2], c[3], c[4], c[5], bo, 0, 1}
end
-- A script that fails midway keeps what it wrote, so the keys whose type a
-- user could have broken (a dead-letter list overwritten, say) are checked
-- before anything is written: a refused commit changes nothing.
local function items_at()
  local j = 4
  return j + tonumber(ARGV[j]) + 3 + 4
end
local function sections()
  local j = 4
  j = j + tonumber(ARGV[j]) + 3 + 4  -- bloom layers, capacity, rate; pushes
  local nitems = tonumber(ARGV[j]); j = j + 2 + 2 * nitems + 1  -- items, policy
  j = j + 1 + 4 * tonumber(ARGV[j])  -- starts
  j = j + 1 + 2 * tonumber(ARGV[j])  -- unblocks
  j = j + 1 + 2 * tonumber(ARGV[j])  -- backoffs
  j = j + 1 + 3 * tonumber(ARGV[j])  -- latencies
  local nacks = tonumber(ARGV[j]); j = j + 1 + nacks
  local nraws = tonumber(ARGV[j]); j = j + 1 + nraws
  local ndeads = tonumber(ARGV[j]); j = j + 1 + 2 * ndeads
  if ndeads > 0 then j = j + 1 end
  return nitems, nacks + nraws, ndeads, j
end
local function check_type(key, kind)
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'none' and t ~= kind then
    return redis.error_reply('WRONGTYPE ' .. key .. ' is a ' .. t .. ', not a ' .. kind)
  end
end
do
  local nitems, nfinished, ndeads, rev = sections()
  local nrev = tonumber(ARGV[rev])
  local wrong = check_type(stats, 'hash') or check_type(KEYS[7], 'hash')
    or (nitems > 0 and check_type(items, 'hash'))
    or (nitems > 0 and check_type(held, 'hash'))
    or (nitems > 0 and check_type(KEYS[tonumber(ARGV[items_at() + 1])], 'stream'))
    or (nfinished + ndeads > 0 and check_type(held, 'hash'))
    or (ndeads > 0 and check_type(dead, 'list'))
    or (ndeads > 0 and check_type(KEYS[tonumber(ARGV[rev - 2 * ndeads - 1])], 'hash'))
    or (nrev > 0 and check_type(KEYS[tonumber(ARGV[rev + 1])], 'zset'))
  if wrong then return wrong end
end

local i = 4
local queued, dups, new_fps, marks_dup = 0, 0, 0, 0

-- Bloom filter layers: bits m, hashes k, count n, capacity cap.
local nkeys = tonumber(ARGV[i]); i = i + 1
local layer_keys = {}
for l = 1, nkeys do layer_keys[l] = KEYS[tonumber(ARGV[i])]; i = i + 1 end
local base_cap, base_p = tonumber(ARGV[i]), tonumber(ARGV[i + 1]); i = i + 2
local layers = tonumber(redis.call('HGET', bloom, 'layers') or '0')
-- ver: 2 for a layer of a prime number of bits probed with h2 mod m;
-- 1 (no field) for a layer made before, probed with h2 as it is.
local m, k, n, cap, ver = {}, {}, {}, {}, {}
local fp_est = 0

local MAX_BITS = 4294967295

local function layer_cap(l)  -- capacity of layer l (0-based), as new_layer makes it
  local c = base_cap * 2 ^ l
  local p = base_p * 0.9 * 0.1 ^ l
  if math.ceil(c * -math.log(p) / math.log(2) ^ 2) > MAX_BITS then
    c = math.floor(MAX_BITS * math.log(2) ^ 2 / -math.log(p))
  end
  return c
end

local function is_prime(x)
  if x % 2 == 0 then return x == 2 end
  local d = 3
  while d * d <= x do
    if x % d == 0 then return false end
    d = d + 2
  end
  return x > 1
end

-- A prime number of bits near *bits*: with h2 taken mod m (never 0), a
-- URL's k probes are k distinct bits. With any m, some URLs' h2 has a small
-- order mod m and probes only a few bits, a floor of false positives of
-- about 1.5/m per URL whatever the error rate asked.
local function prime_bits(bits)
  local x = bits
  while x <= MAX_BITS and not is_prime(x) do x = x + 1 end
  if x > MAX_BITS then
    x = MAX_BITS
    while not is_prime(x) do x = x - 1 end
  end
  return x
end

local function layer_bits(l)  -- bits and capacity of layer l (0-based)
  local c = base_cap * 2 ^ l
  local p = base_p * 0.9 * 0.1 ^ l
  local bits = math.ceil(c * -math.log(p) / math.log(2) ^ 2)
  if bits > MAX_BITS then
    -- One Redis string holds 2^32 bits: a layer that would be larger holds
    -- fewer URLs instead, at the same error rate.
    bits = MAX_BITS
    c = math.floor(bits * math.log(2) ^ 2 / -math.log(p))
  end
  return prime_bits(bits), c, p
end

local function new_layer()
  if layers + 1 > nkeys then return false end
  local bits, c, p = layer_bits(layers)
  layers = layers + 1
  cap[layers] = c
  m[layers] = bits
  -- Allocated beforehand by bloom_grow.lua (checked before any write below).
  k[layers] = math.max(1, math.floor(-math.log(p) / math.log(2) + 0.5))
  n[layers] = 0
  ver[layers] = 2
  return true
end

local function bloom_rate()
  local total = 0
  for l = 1, layers do
    total = total + (1 - math.exp(-k[l] * n[l] / m[l])) ^ k[l]
  end
  return total
end

local function probe_step(h2, l)
  if ver[l] ~= 2 then return h2 end
  local step = h2 % m[l]
  if step == 0 then return 1 end
  return step
end

local function bloom_check_add(h1, h2)
  h1, h2 = tonumber(h1), tonumber(h2)
  for l = 1, layers do
    local all = true
    local step = probe_step(h2, l)
    for j = 0, k[l] - 1 do
      if redis.call('GETBIT', layer_keys[l], (h1 + j * step) % m[l]) == 0 then
        all = false
        break
      end
    end
    if all then return 0 end
  end
  fp_est = fp_est + bloom_rate()
  if layers == 0 or n[layers] >= cap[layers] then new_layer() end
  local step = probe_step(h2, layers)
  for j = 0, k[layers] - 1 do
    redis.call('SETBIT', layer_keys[layers], (h1 + j * step) % m[layers], 1)
  end
  n[layers] = n[layers] + 1
  return 1
end

if layers > nkeys then return {-1, layers + 2} end
for l = 1, layers do
  local v = redis.call('HMGET', bloom, 'm' .. l, 'k' .. l, 'n' .. l, 'cap' .. l, 'v' .. l)
  m[l], k[l], n[l], cap[l] = tonumber(v[1]), tonumber(v[2]), tonumber(v[3]), tonumber(v[4])
  ver[l] = tonumber(v[5] or '1')
end

local bloom_pushes = tonumber(ARGV[i])
local queues = cjson.decode(ARGV[i + 1])
local heads, blob = ARGV[i + 2], ARGV[i + 3]; i = i + 4
-- Growth must fit in the layer keys passed: check before writing anything.
if bloom_pushes > 0 then
  local room, l = 0, layers
  if layers > 0 then room = cap[layers] - n[layers] end
  while room < bloom_pushes do
    room = room + layer_cap(l)
    l = l + 1
  end
  if l > nkeys then return {-1, l} end
  -- Each new layer must be allocated already (bloom_grow.lua): ask for it
  -- before anything is written.
  for new = layers + 1, l do
    local size = math.ceil(layer_bits(new - 1) / 8)
    if redis.call('STRLEN', layer_keys[new]) ~= size then return {-2, new, size} end
  end
end

-- Checked in the batch's order; each queue's new entries are then pushed in
-- order, one RPUSH per thousand entries rather than one per entry.
local use_bloom = nkeys > 0
local fresh_entries = {}
for q = 1, #queues do fresh_entries[q] = {} end
local at = 1  -- where the next request's y starts in blob
local byte, sub = string.byte, string.sub
for h = 1, #heads, 13 do
  local q1, q2, q3, q4, x1, x2, x3, x4, ylen, e1, e2, e3, e4 = byte(heads, h, h + 12)
  local len = ((e1 * 256 + e2) * 256 + e3) * 256 + e4
  local from = at + ylen
  at = from + len
  local fresh = 1
  if ylen > 0 then
    local x = ((x1 * 256 + x2) * 256 + x3) * 256 + x4
    local y = sub(blob, from - ylen, from - 1)
    if use_bloom then
      fresh = bloom_check_add(x, y)
    else
      fresh = redis.call('SADD', KEYS[x], y)
    end
    new_fps = new_fps + fresh
  end
  if fresh == 0 then
    dups = dups + 1
    if len == 0 then marks_dup = marks_dup + 1 end
  elseif len > 0 then
    local list = fresh_entries[((q1 * 256 + q2) * 256 + q3) * 256 + q4]
    list[#list + 1] = sub(blob, from, at - 1)
  end
end
for q, list in ipairs(fresh_entries) do
  local nfresh = #list
  if nfresh > 0 then
    local key, prio = KEYS[queues[q][1]], queues[q][2]
    redis.call('ZADD', prios, -tonumber(prio), prio)
    for s = 1, nfresh, 1000 do
      redis.call('RPUSH', key, unpack(list, s, math.min(s + 999, nfresh)))
    end
    queued = queued + nfresh
  end
end

if bloom_pushes > 0 then
  redis.call('HSET', bloom, 'layers', layers)
  for l = 1, layers do
    redis.call('HSET', bloom, 'm' .. l, m[l], 'k' .. l, k[l], 'n' .. l, n[l], 'cap' .. l, cap[l])
    if ver[l] == 2 then redis.call('HSET', bloom, 'v' .. l, 2) end
  end
  if fp_est > 0 then redis.call('HINCRBYFLOAT', bloom, 'fp_est', fp_est) end
end

local items_new, items_dup = 0, 0
n = tonumber(ARGV[i]); i = i + 1
local itemlog = KEYS[tonumber(ARGV[i])]; i = i + 1
local items_changed, items_removed, items_stale = 0, 0, 0
for _ = 1, n do
  local value = ARGV[i + 1]
  local head = string.sub(value, 1, 1)
  if head == '!' or head == '-' then
    local bar = string.find(value, '|', 2, true)
    local lease = string.sub(value, 2, bar - 1)
    value = string.sub(value, bar + 1)
    if lease ~= '' and redis.call('HEXISTS', held, lease) == 0 then
      head = 'stale'
      items_stale = items_stale + 1
    end
  end
  if head == 'stale' then
    -- nothing: a later lease's version of the page stands
  elseif head == '-' then
    items_removed = items_removed + redis.call('HDEL', items, ARGV[i])
  elseif head == '!' then
    local old = redis.call('HGET', items, ARGV[i])
    -- A trimmed item left "#" and 8 hex digits of its SHA-1 (crawler.follow).
    if old == value or old == '#' .. string.sub(redis.sha1hex(value), 1, 8) then
      items_dup = items_dup + 1
    else
      redis.call('HSET', items, ARGV[i], value)
      redis.call('XADD', itemlog, '*', 'i', ARGV[i], 'v', value)
      if old then items_changed = items_changed + 1 else items_new = items_new + 1 end
    end
  elseif string.sub(value, 1, 1) == '+' then
    value = string.sub(value, 2)
    if redis.call('HSETNX', items, ARGV[i], value) == 1 then
      redis.call('XADD', itemlog, '*', 'i', ARGV[i], 'v', value)
      items_new = items_new + 1
    else
      items_dup = items_dup + 1
    end
  elseif redis.call('HSETNX', items, ARGV[i], value) == 1 then
    redis.call('XADD', itemlog, '*', 'i', ARGV[i])
    items_new = items_new + 1
  else
    items_dup = items_dup + 1
  end
  i = i + 2
end

-- Politeness: the policy, then what happened to requests since last time.
local t = redis.call('TIME')
p_init(ARGV[i], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)); i = i + 1
n = tonumber(ARGV[i]); i = i + 1
if n > 1 then
  local domains = {}
  for j = 0, n - 1 do domains[j + 1] = ARGV[i + 4 * j] end
  p_states(domains)
end
for _ = 1, n do
  p_started(ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]))
  i = i + 4
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  p_unblock(ARGV[i], tonumber(ARGV[i + 1]))
  i = i + 2
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  p_backoff(ARGV[i], tonumber(ARGV[i + 1]))
  i = i + 2
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  p_latency(ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2] == '1')
  i = i + 3
end

-- Remove a lease from the node's held hash, freeing its domain's slot.
-- Lease ids this commit finished (a revisit made from one is stored).
local finished = {}
local function finish(id)
  local value = redis.call('HGET', held, id)
  if not value then return 0 end
  finished[id] = true
  local d = p_held_domain(value)
  if d and string.sub(value, 1, 2) ~= '@|' then p_release(d) end  -- raw seeds hold no slot
  return redis.call('HDEL', held, id)
end

-- finish() for many leases: one HMGET and one HDEL per 1000 of them.
local function finish_all(first, count)
  local ids, once = {}, {}
  for j = first, first + count - 1 do
    if not once[ARGV[j]] then
      once[ARGV[j]] = true
      ids[#ids + 1] = ARGV[j]
    end
  end
  local done = 0
  for s = 1, #ids, 1000 do
    local part = {unpack(ids, s, math.min(s + 999, #ids))}
    local values = redis.call('HMGET', held, unpack(part))
    local found, domains = {}, {}
    for j, id in ipairs(part) do
      local value = values[j]
      if value then
        found[#found + 1] = id
        finished[id] = true
        -- raw seeds hold no slot
        if string.sub(value, 1, 2) ~= '@|' then domains[#domains + 1] = p_held_domain(value) end
      end
    end
    p_states(domains)
    for _, d in pairs(domains) do p_release(d) end
    if #found > 0 then done = done + redis.call('HDEL', held, unpack(found)) end
  end
  return done
end

local acked, released = 0, 0
n = tonumber(ARGV[i]); i = i + 1
if n > 0 then acked = finish_all(i, n) end
i = i + n
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  if redis.call('HDEL', held, ARGV[i]) == 1 then
    released = released + 1
    finished[ARGV[i]] = true
  end
  i = i + 1
end
local deads = 0
n = tonumber(ARGV[i]); i = i + 1
local deadpages = n > 0 and KEYS[tonumber(ARGV[i])]
if n > 0 then i = i + 1 end
local LETTER = '^{"page": "(%x+)", "count": (%d+)(.*)$'
for _ = 1, n do
  if ARGV[i] ~= '' then released = released + finish(ARGV[i]) end
  local letter = ARGV[i + 1]
  local page, _, rest = string.match(letter, LETTER)
  local listed = false  -- the page's first letter is in the list already
  if page then
    -- "=" and the page's latest letter: its first stays where it is in the
    -- list (no scan of the list to replace it); readers show the latest.
    -- Without "=": a letter stored before, in the list as it is.
    local before = redis.call('HGET', deadpages, page)
    local counted = nil  -- the count of the page's letter before this one
    if before and string.sub(before, 1, 1) == '=' then
      listed = true
      counted = select(2, string.match(string.sub(before, 2), LETTER))
    elseif before and redis.call('LREM', dead, -1, before) == 1 then
      counted = select(2, string.match(before, LETTER))
      deads = deads - 1  -- replaced: no more letters than before
    end
    if counted then
      letter = '{"page": "' .. page .. '", "count": ' .. (tonumber(counted) + 1) .. rest
    end
    redis.call('HSET', deadpages, page, '=' .. letter)
  end
  if not listed then
    redis.call('RPUSH', dead, letter)
    deads = deads + 1
  end
  i = i + 2
end
n = tonumber(ARGV[i]); i = i + 1
if n > 0 then
  local due = KEYS[tonumber(ARGV[i])]
  i = i + 1
  for _ = 1, n do
    local lease = ARGV[i + 1]
    if lease == '' or finished[lease] or redis.call('HEXISTS', held, lease) == 1 then
      redis.call('ZADD', due, P_now + tonumber(ARGV[i]), ARGV[i + 2])
    end
    i = i + 3
  end
end
p_save()

if queued > 0 then
  redis.call('HINCRBY', stats, 'queued', queued)
  redis.call('HINCRBY', stats, 'pushed', queued)
end
if new_fps > 0 then redis.call('HINCRBY', stats, 'seen', new_fps) end
if dups > marks_dup then redis.call('HINCRBY', stats, 'duplicates', dups - marks_dup) end
if items_new > 0 then redis.call('HINCRBY', stats, 'items', items_new) end
if items_dup > 0 then redis.call('HINCRBY', stats, 'items_dup', items_dup) end
if items_changed > 0 then redis.call('HINCRBY', stats, 'items_changed', items_changed) end
if items_removed > 0 then redis.call('HINCRBY', stats, 'items_removed', items_removed) end
if items_stale > 0 then redis.call('HINCRBY', stats, 'items_stale', items_stale) end
if acked > 0 then redis.call('HINCRBY', stats, 'done', acked) end
if acked + released > 0 then redis.call('HINCRBY', stats, 'leased', -(acked + released)) end
if deads > 0 then redis.call('HINCRBY', stats, 'dead', deads) end
if seq > 0 then
  redis.call('HSET', KEYS[7], node, seq, 'counts:' .. node,
    table.concat({seq, queued, dups, items_new, items_dup, acked}, ' '))
end
if began ~= '' then redis.call('HSET', KEYS[7], 'began:' .. node, began) end
local bo_ver = tonumber(redis.call('HGET', stats, 'backoff_ver') or '0')
return {queued, dups, items_new, items_dup, acked, bo_ver, P_now, 0}
