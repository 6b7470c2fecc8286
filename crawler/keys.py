"""Every Redis key the framework uses, in one place.

All keys of one crawl share the hash tag ``{NAME}`` (NAME is the spider name,
or ``CRAWLER_CRAWL_NAME``), so every multi-key Lua script touches one slot and
works on Redis Cluster (one crawl on one shard: it is not split yet).

Schema (``E`` is a *frontier entry*: ``"<deliveries>|<domain>|<request JSON>"``,
where the domain is the request's Scrapy download slot)::

    {NAME}:prios          ZSET   member = priority (as text), score = -priority.
                                 Lists the non-empty priority queues; the
                                 lowest score is the highest priority.
    {NAME}:q:<prio>       LIST   entries E of one priority, FIFO (RPUSH/LPOP).
    {NAME}:nodes          ZSET   node id -> lease deadline (ms, Redis clock).
                                 A node renews it with every heartbeat.
    {NAME}:held:<node>    HASH   lease id -> "<prio>|E" for every request the
                                 node holds, from the moment it leases it until
                                 the request's outputs are stored (the ack).
                                 Raw scrapy-redis seeds are held as "@|<k>|<raw>",
                                 k the type of the key they came from: 0 list,
                                 1 set, 2 sorted set (raw is "<score>|<member>").
    {NAME}:commitseq      HASH   node id -> sequence number of the last commit
                                 of that node applied: a commit sent again
                                 (its reply was lost) is not applied twice;
                                 counts:<node> -> "<seq> <queued> <dups>
                                 <items new> <items dup> <acked>" of that
                                 commit, which a replay returns.
    {NAME}:config         HASH   seen -> JSON of the seen-set's mode and
                                 parameters, recorded on first use; a process
                                 configured otherwise refuses to start.
    {NAME}:nodeinfo       HASH   node id -> JSON {host, pid, started, state,
                                 pages, items, pages_per_min, items_per_min}.
    {NAME}:nodebeat       HASH   node id -> time of its last heartbeat (ms,
                                 Redis clock); kept after it leaves or is lost.
    {NAME}:control        HASH   paused = 1 while the crawl is paused.
    {NAME}:clusterstats   HASH   every node's Scrapy stats, summed (HINCRBY).
    {NAME}:run            HASH   the current run, for the cluster's CLOSESPIDER_*
                                 limits: started (ms, Redis clock), and
                                 base:<stat>, each counted stat at its start.
    {NAME}:seen:<shard>   SET    seen fingerprints: the first 8 bytes of
                                 Scrapy's fingerprint as a signed 64-bit
                                 integer (intset encoding), sharded.
    {NAME}:bloom          HASH   Bloom filter metadata (seen mode "bloom"):
                                 layers, and per layer l: m<l> bits, k<l>
                                 hashes, n<l> URLs, cap<l>; fp_est, the
                                 expected number of URLs skipped as false
                                 positives.
    {NAME}:bloom:<l>      STRING the bits of Bloom layer l (1, 2, ...).
    {NAME}:items          HASH   item id -> item JSON (first write wins); ""
                                 once a follower exported it with
                                 CRAWLER_EXPORT_TRIM (crawler.follow).
    {NAME}:itemlog        STREAM one entry per new item, i = its id, in the
                                 order stored (read by export --follow).
    {NAME}:export         HASH   cursor name -> JSON of a follower's cursor.
    {NAME}:trimmed        LIST   "<ms>|<item id>" of items a follower trimmed,
                                 oldest first: their ids are dropped from
                                 {NAME}:items CRAWLER_EXPORT_TRIM_KEEP later.
    {NAME}:stats          HASH   counters kept by the scripts: queued, leased,
                                 pushed, seen, duplicates, done, items,
                                 items_dup, items_changed, items_removed,
                                 items_stale (crawler.recrawl), dead,
                                 lease_seq.
    {NAME}:dead           LIST   dead letters: JSON {reason, entry, node, time}.
    {NAME}:deadpages      HASH   page -> "=" and its latest dead letter, for
                                 letters of a recrawl's revisits (JSON led by
                                 {"page", "count"}): {NAME}:dead keeps the
                                 page's first letter in place, a failing
                                 revisit counts on here (commit.lua; a value
                                 without "=" is the letter in the list, as
                                 stored before).
    {NAME}:due            ZSET   "<prio>|<entry>", the request that fetches a
                                 page again (its recrawl state in its meta),
                                 -> when it is due (ms, Redis clock), with
                                 recrawl on (crawler.recrawl).
    {NAME}:park:<d>       LIST   "<prio>|E" of domain d set aside until d is
                                 ready (its delay passed, a slot free).
    {NAME}:parkin:<node>  LIST   "<prio>|E" a lease call of the node set aside
                                 for domains whose park list it had not
                                 declared; its next call moves them there.
    {NAME}:parked         ZSET   domain -> when its parked requests may go
                                 (ms, Redis clock; 2^53-1: no free slot).
    {NAME}:dnext          HASH   domain -> no request leased before (ms).
    {NAME}:dbusy          HASH   domain -> requests leased, not finished.
                                 Both also hold a field "\0" with a long
                                 value, which keeps them hash tables (see
                                 _polite.lua p_hset).
    {NAME}:dbackoff       HASH   domain -> "<until ms>|<level>" after 429/503.
    {NAME}:dcrawl         HASH   domain -> robots.txt Crawl-delay (ms; 0: none).
    {NAME}:dcrawlsite     HASH   domain -> JSON {"scheme://netloc": ms}: the
                                 Crawl-delay of each robots.txt of the domain
                                 as last read; dcrawl holds the longest.
    {NAME}:dauto          HASH   domain -> AutoThrottle delay (ms).
    {NAME}:dpages         HASH   domain -> requests handed out for the first
                                 time, of domains with a page budget
                                 (CRAWLER_DOMAIN_MAX_PAGES).
    {NAME}:robots:<site>  STRING robots.txt of scheme://netloc, shared with an
                                 expiry: "B"+body, "E" (failed) or "F" (being
                                 fetched).
    crawler:crawls        SET    names of the crawls in this Redis (no hash
                                 tag: only ever touched on its own).
    NAME:start_urls       LIST   scrapy-redis compatible seeds (no hash tag, for
                                 compatibility), or a SET or ZSET
                                 (``REDIS_START_URLS_AS_SET``/``_AS_ZSET``): read
                                 as whatever type it is. Named by
                                 ``CRAWLER_START_URLS_KEY``, else a RedisSpider's
                                 ``redis_key``, else ``REDIS_START_URLS_KEY``.
                                 On Redis Cluster it must share the crawl's
                                 slot: ``{NAME}:start_urls`` (crawler.topology).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    """Key names of one crawl."""

    name: str
    seen_shards: int
    start_urls: str
    # How many raw seeds one lease takes at most (0: as many as the node wants).
    start_urls_batch: int = 0
    # The hash tag of a partition other than the first (crawler.partitions).
    part_tag: str = ""

    @property
    def tag(self) -> str:
        return self.part_tag or "{" + self.name + "}"

    @property
    def prios(self) -> str:
        return f"{self.tag}:prios"

    def queue(self, priority: int | str) -> str:
        return f"{self.tag}:q:{priority}"

    @property
    def nodes(self) -> str:
        return f"{self.tag}:nodes"

    def held(self, node: str) -> str:
        return f"{self.tag}:held:{node}"

    @property
    def commit_seqs(self) -> str:
        return f"{self.tag}:commitseq"

    @property
    def config(self) -> str:
        return f"{self.tag}:config"

    @property
    def nodeinfo(self) -> str:
        return f"{self.tag}:nodeinfo"

    def seen(self, shard: int) -> str:
        return f"{self.seen_prefix}{shard}"

    @property
    def seen_prefix(self) -> str:
        return f"{self.tag}:seen:"

    @property
    def nodebeat(self) -> str:
        return f"{self.tag}:nodebeat"

    @property
    def control(self) -> str:
        return f"{self.tag}:control"

    @property
    def clusterstats(self) -> str:
        return f"{self.tag}:clusterstats"

    @property
    def bloom(self) -> str:
        return f"{self.tag}:bloom"

    def bloom_layer(self, layer: int) -> str:
        return f"{self.tag}:bloom:{layer}"

    @property
    def items(self) -> str:
        return f"{self.tag}:items"

    def series(self, node: str) -> str:
        """The node's time series for the dashboard (crawler.timeseries)."""
        return f"{self.tag}:ts:{node}"

    @property
    def run(self) -> str:
        return f"{self.tag}:run"

    @property
    def itemlog(self) -> str:
        return f"{self.tag}:itemlog"

    @property
    def export(self) -> str:
        return f"{self.tag}:export"

    @property
    def trimmed(self) -> str:
        return f"{self.tag}:trimmed"

    @property
    def stats(self) -> str:
        return f"{self.tag}:stats"

    @property
    def dead(self) -> str:
        return f"{self.tag}:dead"

    @property
    def due(self) -> str:
        return f"{self.tag}:due"

    @property
    def deadpages(self) -> str:
        return f"{self.tag}:deadpages"

    # Politeness (see crawler/lua/_polite.lua, which derives the same names).
    def park(self, domain: str) -> str:
        return f"{self.tag}:park:{domain}"

    def parkin(self, node: str) -> str:
        return f"{self.tag}:parkin:{node}"

    @property
    def parked(self) -> str:
        return f"{self.tag}:parked"

    @property
    def domain_next(self) -> str:
        return f"{self.tag}:dnext"

    @property
    def domain_busy(self) -> str:
        return f"{self.tag}:dbusy"

    @property
    def backoffs(self) -> str:
        return f"{self.tag}:dbackoff"

    @property
    def crawl_delays(self) -> str:
        return f"{self.tag}:dcrawl"

    @property
    def site_crawl_delays(self) -> str:
        return f"{self.tag}:dcrawlsite"

    @property
    def auto_delays(self) -> str:
        return f"{self.tag}:dauto"

    @property
    def domain_pages(self) -> str:
        return f"{self.tag}:dpages"

    def robots(self, site: str) -> str:
        return f"{self.tag}:robots:{site}"


#: The registry of crawls; outside every crawl's hash tag.
CRAWLS_KEY = "crawler:crawls"


def make_keys(
    name: str, seen_shards: int, start_urls_template: str, start_urls_batch: int = 0
) -> Keys:
    """Build the key names for crawl *name* (``%(name)s`` expands in the template)."""
    return Keys(
        name=name,
        seen_shards=seen_shards,
        start_urls=start_urls_template % {"name": name, "spider": name},
        start_urls_batch=start_urls_batch,
    )
