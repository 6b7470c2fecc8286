"""scrapy-redis projects, unchanged, under the framework.

* A ``RedisSpider`` / ``RedisCrawlSpider`` gets its seeds from its
  ``redis_key`` through the frontier (``lease_raw.lua``: leased, not popped;
  deduplicated by the seen-set; bad lines dead-lettered), in scrapy-redis's URL
  and JSON formats or through the spider's own ``make_request_from_data``.
  Its own loop (``spider_idle`` popping ``redis_key`` and raising
  ``DontCloseSpider``) is switched off, so nodes finish with the cluster.
* scrapy-redis's own components (a spider's ``server``, ``RedisPipeline``,
  ``RedisStatsCollector``) get the Redis the framework uses, ``REDIS_URL``
  from the environment included.
* scrapy-redis settings left in a project are honoured or replaced, and
  reported once at start (:mod:`crawler.scrapy_redis_settings`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from scrapy import Request, Spider, signals
from scrapy.crawler import Crawler
from scrapy.settings import SETTINGS_PRIORITIES, BaseSettings
from scrapy_redis import connection as scrapy_redis_connection
from scrapy_redis import defaults as scrapy_redis_defaults
from scrapy_redis.spiders import RedisMixin

from crawler.config import CrawlConfig
from crawler.connection import (
    SENTINEL_SCHEMES,
    configured_url,
    is_cluster,
    resolve_url,
    sync_client,
)
from crawler.exceptions import BadSeed, ConfigError
from crawler.scrapy_redis_settings import (
    component_path,
    from_scrapy_redis,
    report,
    uses_scrapy_redis,
)
from crawler.seeds import check_url, parse_seed

logger = logging.getLogger(__name__)

# Request.meta keys Scrapy's own components read (besides the seed allow-list).
_SCRAPY_META = frozenset(
    """allow_offsite autothrottle_dont_adjust_delay backoff_times bindaddress
    cache_timestamp cached_response cookiejar depth dont_cache dont_merge_cookies
    dont_obey_robotstxt dont_redirect dont_retry download_fail_on_dataloss
    download_latency download_maxsize download_slot download_timeout
    download_warnsize ftp_local_filename ftp_passive ftp_password ftp_user
    handle_httpstatus_all handle_httpstatus_list http_auth_domain http_pass
    http_user is_secure is_start_request max_retry_times priority_adjust proxy
    redirect_reasons redirect_times redirect_ttl redirect_urls referrer_policy
    retry_times rule verbatim_url""".split()
)

SCHEDULER = "crawler.scheduler.RedisScheduler"
#: The spider middleware's meta key that keeps a start request out of the seen-set.
_DONT_DEDUPE = "crawler_dont_dedupe_start"


def adopt(settings: BaseSettings, crawler: Crawler | None) -> None:
    """Called by the add-on: settings for scrapy-redis components and spiders.

    On a crawl (the spider exists: Scrapy builds it before the add-ons run)
    the spider's own Redis loop is switched off and the settings report is
    logged; commands only get the settings."""
    spidercls = crawler.spidercls if crawler is not None else None
    spider = crawler.spider if crawler is not None else None
    path = ""
    if from_scrapy_redis(settings.get("SCHEDULER"), "scrapy_redis.scheduler.Scheduler"):
        # A project's scrapy-redis scheduler outranks the add-on's priority.
        path = component_path(settings.get("SCHEDULER"))
        settings.set("SCHEDULER", SCHEDULER, settings.getpriority("SCHEDULER") or "addon")
    if spidercls is not None and issubclass(spidercls, RedisMixin):
        _seed_key(settings, spidercls, spider)
    if uses_scrapy_redis(settings, spidercls):
        _share_redis(settings)
    _idle_grace(settings, spidercls, spider)
    if crawler is not None and spider is not None:
        if isinstance(spider, RedisMixin):
            _tame(spider, crawler, settings)
        report(settings, spider, path)


def _idle_grace(
    settings: BaseSettings, spidercls: type[Spider] | None, spider: Spider | None
) -> None:
    """scrapy-redis's idle time (close after that long idle) > 0 is the
    cluster's finish grace, unless CRAWLER_FINISH_GRACE is set: a RedisSpider's
    ``max_idle_time`` (``-a max_idle_time=N`` too), else
    MAX_IDLE_TIME_BEFORE_CLOSE, as scrapy-redis's setup_redis reads them
    (the attribute was ignored: a node told to wait 20 s for seeds exited
    after 2, leaving them unfetched)."""
    idle: Any = None
    if spidercls is not None and issubclass(spidercls, RedisMixin):
        idle = getattr(spider if spider is not None else spidercls, "max_idle_time", None)
    if idle is None:
        idle = settings.getint("MAX_IDLE_TIME_BEFORE_CLOSE", 0)
    try:
        idle = int(idle)
    except (TypeError, ValueError):
        raise ConfigError(f"max_idle_time = {idle!r} is not a number of seconds.") from None
    priority = settings.getpriority("CRAWLER_FINISH_GRACE") or 0
    if idle > 0 and priority <= SETTINGS_PRIORITIES["addon"]:
        settings.set("CRAWLER_FINISH_GRACE", idle, "addon")


def _seed_key(settings: BaseSettings, spidercls: type[Spider], spider: Spider | None) -> None:
    """The spider's ``redis_key`` (formatted as scrapy-redis does) becomes the
    crawl's seed key, unless ``CRAWLER_START_URLS_KEY`` is set."""
    # A spider's setup_redis has formatted its key already (-a redis_key=... too).
    key = getattr(spider, "redis_key", None)
    if not key:
        key = getattr(spidercls, "redis_key", None) or settings.get("REDIS_START_URLS_KEY")
        key = str(key or scrapy_redis_defaults.START_URLS_KEY) % {"name": spidercls.name}
    if (settings.getpriority("CRAWLER_START_URLS_KEY") or 0) <= SETTINGS_PRIORITIES["addon"]:
        # make_keys formats the template again: keep any "%" literal.
        settings.set("CRAWLER_START_URLS_KEY", key.replace("%", "%%"), "addon")
    batch = getattr(spidercls, "redis_batch_size", None)
    if batch is not None:
        name = "REDIS_START_URLS_BATCH_SIZE"
        priority = max(settings.getpriority(name) or 0, SETTINGS_PRIORITIES["spider"])
        settings.set(name, int(batch), priority)


def _share_redis(settings: BaseSettings) -> None:
    """scrapy-redis's clients read the ``REDIS_URL`` setting: make it the URL
    the framework uses (the environment's, or the private local server)."""
    url = configured_url(settings) or resolve_url(settings)
    if settings.get("REDIS_URL") != url:
        priority = max(settings.getpriority("REDIS_URL") or 0, SETTINGS_PRIORITIES["addon"])
        settings.set("REDIS_URL", url, priority)
    params = settings.getdict("REDIS_PARAMS")
    if "redis_cls" not in params and (is_cluster(url) or urlsplit(url).scheme in SENTINEL_SCHEMES):
        # redis.Redis cannot follow a cluster's MOVED or find a Sentinel's master.
        params["redis_cls"] = f"{__name__}.FleetRedis"
        priority = max(settings.getpriority("REDIS_PARAMS") or 0, SETTINGS_PRIORITIES["addon"])
        settings.set("REDIS_PARAMS", params, priority)


class FleetRedis:
    """scrapy-redis's ``redis_cls`` on Redis Cluster and Sentinel: its
    ``from_url`` gives the framework's client for the URL's topology."""

    _KWARGS = ("decode_responses", "encoding", "socket_timeout", "socket_connect_timeout")

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Any:
        return sync_client(url, **{k: v for k, v in kwargs.items() if k in cls._KWARGS})


def _no_requests() -> Iterable[Request]:
    return iter(())


def quiet_redis_spider(spider: Any, crawler: Crawler) -> None:
    """Switch off a scrapy-redis spider's own loop: its ``spider_idle``
    handler (pops ``redis_key``, raises ``DontCloseSpider``) and
    ``next_requests`` (pops without a lease). Other spiders: nothing."""
    if isinstance(spider, RedisMixin):
        crawler.signals.disconnect(spider.spider_idle, signal=signals.spider_idle)
        spider.next_requests = _no_requests


def _tame(spider: Any, crawler: Crawler, settings: BaseSettings) -> None:
    """Switch off the spider's own Redis loop; its seeds come through the frontier.

    scrapy-redis's ``spider_idle`` pops ``redis_key`` and raises
    ``DontCloseSpider`` for ever (with the default
    ``MAX_IDLE_TIME_BEFORE_CLOSE = 0``); ``next_requests`` (also behind
    ``start_requests``) pops without a lease."""
    quiet_redis_spider(spider, crawler)
    # Built with the settings as they were before the add-ons ran.
    spider.server = scrapy_redis_connection.get_redis_from_settings(settings)


def seed_requests(raw: bytes, spider: Spider, config: CrawlConfig) -> list[Request]:
    """The requests for one raw seed from the seed key; raises BadSeed.

    A scrapy-redis spider's seeds are read as scrapy-redis reads them: a
    ``make_request_from_data`` of its own is called with the raw data; else a
    URL line, or a JSON object with ``url`` and optional ``method``, ``meta``
    and form fields, both ``dont_filter`` as scrapy-redis makes them (they
    pass the offsite filter). Other spiders' seeds are the framework's seed
    lines. Either way the seen-set dedupes them (:func:`seed_fingerprint`)."""
    if not isinstance(spider, RedisMixin):
        # REDIS_ENCODING as scrapy-redis's spiders read it (UTF-8 by
        # default); bytes it cannot decode are a bad seed, not U+FFFD in a
        # URL that is then fetched (helper 38: ?q=é in latin-1 fetched as
        # ?q=%EF%BF%BD, the wrong page, in silence).
        encoding = spider.settings.get("REDIS_ENCODING") or scrapy_redis_defaults.REDIS_ENCODING
        try:
            line = raw.decode(encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            raise BadSeed(f"cannot decode the seed as {encoding} (REDIS_ENCODING): {exc}") from None
        request = parse_seed(line, spider, config)
        return [] if request is None else [request]
    if type(spider).make_request_from_data is not RedisMixin.make_request_from_data:
        requests = _from_override(raw, spider)
    else:
        requests = _from_scrapy_redis_format(raw, spider, config)
    for request in requests:
        check_url(request.url, config.seed_max_url_length)
    return requests


def seed_fingerprint(request: Request, fingerprinter: Any) -> bytes | None:
    """A seed's fingerprint for the seen-set, ``dont_filter`` or not (the
    start-request rule: only meta ``crawler_dont_dedupe_start`` opts out)."""
    return None if request.meta.get(_DONT_DEDUPE) else fingerprinter.fingerprint(request)


def _text(raw: bytes, spider: Any) -> str:
    encoding = spider.redis_encoding or scrapy_redis_defaults.REDIS_ENCODING
    try:
        return raw.decode(encoding)
    except (UnicodeDecodeError, LookupError) as exc:
        raise BadSeed(f"cannot decode the seed as {encoding} (REDIS_ENCODING): {exc}") from None


def _from_scrapy_redis_format(raw: bytes, spider: Any, config: CrawlConfig) -> list[Request]:
    line = _text(raw, spider).strip()
    if not line.startswith("{"):
        # A URL: the framework's checks, without scrapy-redis's per-line
        # warning, and dont_filter as scrapy-redis's FormRequest(url) has it.
        request = parse_seed(line, spider, config)
        return [] if request is None else [request.replace(dont_filter=True)]
    try:
        data = json.loads(line)
    except ValueError as exc:
        raise BadSeed(f"bad JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("url"), str):
        raise BadSeed("a JSON seed must be an object with a 'url' string")
    meta = data.get("meta", {})
    if not isinstance(meta, dict):
        raise BadSeed("'meta' must be a JSON object")
    _check_meta(meta, config.seed_allowed_meta)
    # scrapy-redis's own code builds the request (form fields, method, meta).
    return _as_requests(spider.make_request_from_data(raw), spider)


def _check_meta(meta: dict[str, Any], allowed: frozenset[str]) -> None:
    """scrapy-redis passes a seed's meta through, and its users put their own
    data there ("job-id"): that passes. Keys that change how Scrapy or the
    framework send the request (a proxy, a download slot, robots.txt) are
    refused unless ``CRAWLER_SEED_ALLOWED_META`` lists them."""
    for key in meta:
        if key not in allowed and (key in _SCRAPY_META or key.startswith(("_", "crawler"))):
            raise BadSeed(
                f"meta key {key!r} changes how the request is sent; seeds may set it "
                "only if CRAWLER_SEED_ALLOWED_META lists it"
            )


def _from_override(raw: bytes, spider: Any) -> list[Request]:
    data: Any = raw
    if spider.settings.getbool("REDIS_DECODE_RESPONSES"):
        data = _text(raw, spider)
    try:
        made = spider.make_request_from_data(data)
    except Exception as exc:
        raise BadSeed(
            f"{type(spider).__name__}.make_request_from_data raised {type(exc).__name__}: {exc}"
        ) from None
    requests = _as_requests(made, spider)
    if not requests:
        raise BadSeed(f"{type(spider).__name__}.make_request_from_data made no request")
    return requests


def _as_requests(made: Any, spider: Any) -> list[Request]:
    """What ``make_request_from_data`` returned (a Request, an iterable of
    them, or nothing, as scrapy-redis 0.9.1's ``next_requests`` accepts)."""
    if isinstance(made, Request):
        return [made]
    if not made:
        return []
    if not isinstance(made, Iterable):
        raise BadSeed(f"make_request_from_data returned {type(made).__name__}, not a Request")
    requests = list(made)
    for request in requests:
        if not isinstance(request, Request):
            raise BadSeed(f"make_request_from_data yielded {type(request).__name__}, not a Request")
    return requests
