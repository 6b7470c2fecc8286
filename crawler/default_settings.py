"""Settings this framework adds, with their defaults, in alphabetical order.

Every name starts with ``CRAWLER_``. Scrapy's own settings keep their meaning.
Redis itself is chosen by ``REDIS_URL`` (see ``crawler.connection``).
"""

#: Seconds the cluster pauses a domain after its first 429 or 503 answer
#: without a ``Retry-After`` header; each further one within a minute of the
#: last pause doubles it, up to CRAWLER_BACKOFF_MAX.
CRAWLER_BACKOFF_BASE = 5.0

#: Longest pause (seconds) of a domain after a 429 or 503 answer, for a
#: ``Retry-After`` too.
CRAWLER_BACKOFF_MAX = 600.0

#: How many times one request answered 429 or 503 is put back to wait for
#: its domain's pause; after that the answer goes on to RetryMiddleware.
CRAWLER_BACKOFF_RETRIES = 10

#: At most this many of those pauses for a 503 without ``Retry-After``: a
#: page that is broken, not a site that is busy, answers 503 for good, and
#: ten doubling pauses held its whole domain (and the crawl's end) for about
#: 40 minutes where plain Scrapy gives up in seconds.
CRAWLER_BACKOFF_RETRIES_503 = 3

#: Most requests, items and acknowledgements sent to Redis in one script call.
CRAWLER_BATCH_SIZE = 200

#: URLs the first layer of the Bloom seen-set holds (CRAWLER_SEEN_MODE =
#: "bloom"); set it near the crawl's expected size. Past it, layers are added.
CRAWLER_BLOOM_CAPACITY = 10_000_000

#: False-positive rate the Bloom seen-set keeps, growth included: the odds
#: that a new URL is taken for seen and skipped.
CRAWLER_BLOOM_ERROR_RATE = 0.0001

#: Seconds a node may hold what finished pages produced (acknowledgements,
#: items, new requests) to commit them together: a slow broad crawl commits
#: a page or two per call otherwise, and each call costs Redis far more than
#: the pages in it. A node commits at once when it has politeness news (a
#: request started, a 429), nothing else to do, nothing leased ahead, a
#: full batch, or a finished request of a domain whose slots it holds its
#: share of (the domain's concurrency over the live nodes). A node killed
#: meanwhile has those pages fetched again. 0: commit at every flush.
CRAWLER_COMMIT_WAIT = 0.5

#: Name of the crawl's key namespace in Redis; defaults to the spider name.
#: Two crawls of the same spider can share one Redis with different names.
CRAWLER_CRAWL_NAME = ""

#: Seconds a finished crawl's keys live on after the last node leaves it; 0:
#: kept until ``scrapy reset``. A node that joins the crawl before then keeps
#: them again (crawler.jobs); ``scrapy seed`` alone does not.
CRAWLER_CRAWL_TTL = 0.0

#: Hours of samples each node keeps in its time series for ``scrapy
#: dashboard``'s charts (crawler.timeseries); older ones are dropped.
CRAWLER_DASHBOARD_HISTORY_HOURS = 6.0

#: Seconds between a node's samples for the dashboard's charts (taken with
#: its heartbeat, so at most every CRAWLER_LEASE_RENEW_INTERVAL). 0: none.
CRAWLER_DASHBOARD_SAMPLE_INTERVAL = 10.0

#: Exit status of ``scrapy crawl`` when the crawl finished (reason
#: ``finished``) holding dead letters: requests it gave up on, or requests
#: and items it could not store. 3 is distinct from Scrapy's 1 (the command
#: failed) and 2 (usage error); 0 makes such a crawl exit like a clean one.
CRAWLER_DEAD_LETTER_EXIT_CODE = 3

#: Pages of each domain (download slot) the whole cluster fetches at most;
#: 0: no limit. A domain's own: ``DOWNLOAD_SLOTS = {"example.com":
#: {"max_pages": 100}}``. Requests beyond it are dropped when their turn
#: comes (``budget_dropped`` in ``scrapy status``); a request fetched again
#: after a crash does not count twice.
CRAWLER_DOMAIN_MAX_PAGES = 0

#: ``scrapy export --follow`` empties the items it wrote in Redis, keeping
#: their ids so an item stored again is still known (crawler.follow).
CRAWLER_EXPORT_TRIM = False

#: Seconds a trimmed item's id is kept (with CRAWLER_EXPORT_TRIM); 0 (the
#: default): for ever. The id keeps the same item stored again (a page
#: processed again after a node's crash, a CRAWLER_ITEM_KEY seen again, an
#: unchanged item of a changed page) from being exported twice. Set it, to
#: more than your recrawl interval, and Redis holds only that window's ids:
#: its memory for items stays flat on a crawl that never ends; an item
#: stored again later is exported again. The follower's ACL user then also
#: needs RPUSH, LTRIM and HDEL (``scrapy acl SPIDER --role follower``).
CRAWLER_EXPORT_TRIM_KEEP = 0.0

#: Seconds the whole cluster must look finished (empty frontier, no request
#: held by any node, nothing new queued) before a node exits with ``finished``.
CRAWLER_FINISH_GRACE = 2.0

#: Seconds between flushes of new requests, items and acks to Redis.
CRAWLER_FLUSH_INTERVAL = 0.05

#: Item field whose value identifies an item (e.g. ``"url"``). Items with the
#: same key are stored once. Empty: the id is derived from the request that
#: produced the item and the item's position in the callback's output.
CRAWLER_ITEM_KEY = ""

#: Keep nodes running when the crawl is finished, waiting for new seeds.
CRAWLER_KEEP_ALIVE = False

#: Seconds between heartbeats that renew a node's leases.
CRAWLER_LEASE_RENEW_INTERVAL = 10.0

#: How long a node's leases last without a heartbeat (seconds). A killed
#: node's requests return to the frontier at most this long after it died.
CRAWLER_LEASE_TIME = 30.0

#: Directory of the private local Redis used when no REDIS_URL is set,
#: relative to the project root (the directory holding scrapy.cfg).
CRAWLER_LOCAL_REDIS_DIR = ".crawler/redis"

#: How many fingerprints a node remembers locally to skip obvious duplicates
#: without asking Redis. 0 turns the cache off.
CRAWLER_LOCAL_SEEN_CACHE = 200_000

#: The longest robots.txt ``Crawl-delay`` kept (seconds; 0: none kept). A
#: longer one (a site's ``Crawl-delay: 86400``, or a typo of 1e12) would
#: hold the domain's pages, and so the crawl's end, for that long.
CRAWLER_MAX_CRAWL_DELAY = 60.0

#: A request held by nodes that died this many times is dead-lettered as a
#: poison request instead of being handed out again.
CRAWLER_MAX_DELIVERIES = 5

#: Classes (Items, dataclasses, attrs classes, enums) that ``meta`` and
#: ``cb_kwargs`` may carry besides those of the project's own packages (the
#: packages of SPIDER_MODULES, e.g. ``myproj`` for ``myproj.spiders``):
#: dotted class names (``"otherlib.items.Product"``) or module prefixes
#: (``"otherlib.items"``). No other class is ever imported from what Redis
#: holds; a request carrying one is dead-lettered with the reason.
CRAWLER_META_CLASSES = list[str]()

#: Address the metrics endpoint listens on: loopback unless told otherwise
#: (it has no authentication). Use "0.0.0.0" where a scraper must reach it,
#: as the Kubernetes manifests in deploy/ do.
CRAWLER_METRICS_ADDRESS = "127.0.0.1"

#: Port of this node's Prometheus metrics endpoint (``/metrics``); 0: off.
CRAWLER_METRICS_PORT = 0

#: Partitions a new crawl is split into, each under its own hash tag, so
#: that on Redis Cluster one crawl spreads over every shard (a domain's
#: requests, seen-set and politeness state stay in one partition). Recorded
#: by the first process that writes to the crawl; later ones keep it. On one
#: Redis, 1 (the default) is fastest.
CRAWLER_PARTITIONS = 1

#: Requests a node leases ahead of need. 0 means CONCURRENT_REQUESTS.
CRAWLER_PREFETCH = 0

#: Adapt each page's revisit interval: halve it when the page changed since
#: the last visit, grow it by half when not, within CRAWLER_RECRAWL_MIN and
#: CRAWLER_RECRAWL_MAX (see crawler/recrawl.py).
CRAWLER_RECRAWL_ADAPTIVE = False

#: Seconds after a page is fetched that it is due again (recrawl); 0: never,
#: a seen URL stays seen. A request's ``meta["recrawl_after"]`` and
#: CRAWLER_RECRAWL_DOMAINS override it. Revisits send the page's ETag and
#: Last-Modified back; a 304 or the same body is "unchanged", and a changed
#: page's items replace the old ones. With recrawl on, nodes stay up while
#: anything is due later.
CRAWLER_RECRAWL_AFTER = 0.0

#: Revisit intervals by domain (download slot): ``{"example.com": 3600}``.
CRAWLER_RECRAWL_DOMAINS = dict[str, float]()

#: Longest revisit interval an adaptive schedule reaches (seconds).
CRAWLER_RECRAWL_MAX = 2592000.0

#: Shortest revisit interval an adaptive schedule reaches (seconds).
CRAWLER_RECRAWL_MIN = 60.0

#: TLS to Redis (with a ``rediss://`` REDIS_URL): the CA bundle to verify the
#: server with, and this client's certificate and key when the server asks
#: for one (``tls-auth-clients``). The URL's own ``ssl_ca_certs``,
#: ``ssl_certfile`` and ``ssl_keyfile`` query arguments, then these, then
#: scrapy-redis's ``REDIS_PARAMS``, are used.
CRAWLER_REDIS_SSL_CA_CERTS = ""

#: This client's certificate (PEM) for a ``rediss://`` Redis that asks for one.
CRAWLER_REDIS_SSL_CERTFILE = ""

#: The private key (PEM) of ``CRAWLER_REDIS_SSL_CERTFILE``.
CRAWLER_REDIS_SSL_KEYFILE = ""

#: Request classes an entry in Redis may name (``_class``); nothing else is
#: ever imported from what Redis holds.
CRAWLER_REQUEST_CLASSES = [
    "scrapy.http.request.Request",
    "scrapy.http.request.form.FormRequest",
    "scrapy.http.request.json_request.JsonRequest",
    "scrapy.http.request.rpc.XmlRpcRequest",
]

#: Seconds a domain's robots.txt, fetched once for the whole cluster, is
#: kept in Redis before a node fetches it again; each node reads it again
#: after that long too (a node that recrawls for good follows a change).
CRAWLER_ROBOTSTXT_TTL = 86400.0

#: ``meta`` keys a seed may set. Keys that reroute traffic (``proxy``,
#: ``bindaddress``, ``download_slot``) are left out on purpose.
CRAWLER_SEED_ALLOWED_META = [
    "cookiejar",
    "depth",
    "dont_cache",
    "dont_redirect",
    "dont_retry",
    "download_timeout",
    "handle_httpstatus_list",
    "max_retry_times",
]

#: Longest URL a seed may have.
CRAWLER_SEED_MAX_URL_LENGTH = 2083

#: How the seen-set is kept: "exact" (64-bit fingerprints in sharded Redis
#: sets, ~9 bytes per URL) or "bloom" (a Bloom filter, ~2.4 bytes per URL at
#: 1 in 10,000, with false positives). See crawler/fingerprints.py.
CRAWLER_SEEN_MODE = "exact"

#: Number of Redis sets the exact seen-set is spread over. Keep about 400
#: URLs per shard or fewer, so Redis stores each as a compact intset:
#: 65,536 shards suit crawls up to about 25 million URLs.
CRAWLER_SEEN_SHARDS = 65536

#: Key of the scrapy-redis compatible seed list (``%(name)s`` is the crawl
#: name). scrapy-redis's ``REDIS_START_URLS_KEY`` is read when this is unset.
CRAWLER_START_URLS_KEY = ""

#: Seconds a node stopping on SIGTERM or Ctrl-C waits for the requests it
#: is processing before it hands them back to the frontier and exits. Also
#: how long a closing node (stopped, or its crawl over) waits for an
#: unreachable Redis to take its last writes; then it exits, and what it
#: held returns to the frontier when its leases expire.
CRAWLER_STOP_TIMEOUT = 30.0
