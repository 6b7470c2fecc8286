"""The framework's settings, read once into a typed object."""

from __future__ import annotations

import difflib
import logging
import math
from dataclasses import dataclass, field
from typing import Any

from scrapy.settings import BaseSettings
from scrapy_redis import defaults as scrapy_redis_defaults

from crawler import default_settings
from crawler.allowlist import allow_list_entries
from crawler.closelimits import CloseLimits
from crawler.exceptions import ConfigError
from crawler.fingerprints import SeenConfig
from crawler.keys import Keys, make_keys
from crawler.partitions import partition_keys, partition_of
from crawler.politeness import Policy

logger = logging.getLogger(__name__)
#: The unknown CRAWLER_ names warned of already (once per process).
_WARNED: set[str] = set()


def warn_unknown(settings: BaseSettings) -> list[str]:
    """Warn of each CRAWLER_ setting the framework does not know (a typo
    such as CRAWLER_RECRAWL_AFTR was ignored in silence, as Scrapy ignores
    unknown names, and the crawl ran without what it asked for); the
    warnings given."""
    known = {n for n in dir(default_settings) if n.startswith("CRAWLER_")}
    said = []
    for name in sorted(str(n) for n in settings):
        if not name.startswith("CRAWLER_") or name in known or name in _WARNED:
            continue
        _WARNED.add(name)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {close[0]}?" if close else "the settings are listed in the README"
        said.append(f"unknown setting {name} is ignored: {hint}")
        logger.warning(said[-1])
    return said


def _get(settings: BaseSettings, name: str) -> Any:
    return settings.get(name, getattr(default_settings, name))


def _names(settings: BaseSettings, name: str) -> frozenset[str]:
    """A list setting, given as a list or, as on the command line
    (``-s NAME=a,b``), as comma-separated text: a frozenset of the text
    was a set of its characters, and every name refused."""
    return frozenset(n.strip() for n in settings.getlist(name, getattr(default_settings, name)))


def _positive(settings: BaseSettings, name: str, kind: type = float) -> Any:
    return _number(settings, name, kind, zero=False)


def _non_negative(settings: BaseSettings, name: str) -> float:
    return float(_number(settings, name, float, zero=True))


def _number(settings: BaseSettings, name: str, kind: type, zero: bool) -> Any:
    raw = _get(settings, name)
    want = "0 or more" if zero else f"a positive {kind.__name__}"
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={raw!r} is not a number; set it to {want}.") from None
    if not math.isfinite(value):
        # NaN passes every comparison below; infinity overflows the
        # milliseconds Redis keeps (a Crawl-delay cut to "inf" never ended).
        raise ConfigError(f"{name}={raw!r} is not a finite number; set it to {want}.")
    if value < 0 or (value == 0 and not zero):
        raise ConfigError(f"{name}={raw!r} must be {'0 or more' if zero else 'greater than 0'}.")
    return value


def _count(settings: BaseSettings, name: str) -> int:
    """An int setting of 0 or more (a typo was a ValueError traceback)."""
    return int(_number(settings, name, int, zero=True))


def _recrawl_domains(settings: BaseSettings) -> dict[Any, Any]:
    try:
        return settings.getdict("CRAWLER_RECRAWL_DOMAINS")
    except ValueError:
        raw = settings.get("CRAWLER_RECRAWL_DOMAINS")
        raise ConfigError(
            f"CRAWLER_RECRAWL_DOMAINS={raw!r} is not a JSON object; map domains to "
            "seconds, e.g. -s 'CRAWLER_RECRAWL_DOMAINS={\"example.com\": 3600}'."
        ) from None


#: Most partitions a crawl may be split into: a few per Redis Cluster master
#: spread it; 100,000 made a 2 MB config that every `scrapy crawls` read for
#: 51 s, and `scrapy reset` ran out of memory listing their keys.
MAX_PARTITIONS = 1024


def _partitions(settings: BaseSettings) -> int:
    count = int(_positive(settings, "CRAWLER_PARTITIONS", int))
    if count > MAX_PARTITIONS:
        raise ConfigError(
            f"CRAWLER_PARTITIONS={count} is more than {MAX_PARTITIONS}; a partition or a few "
            "per Redis Cluster master spread a crawl over the cluster."
        )
    return count


def _seen(settings: BaseSettings) -> SeenConfig:
    seen = SeenConfig(
        mode=str(_get(settings, "CRAWLER_SEEN_MODE")),
        shards=_positive(settings, "CRAWLER_SEEN_SHARDS", int),
        bloom_capacity=_positive(settings, "CRAWLER_BLOOM_CAPACITY", int),
        bloom_error_rate=_positive(settings, "CRAWLER_BLOOM_ERROR_RATE"),
    )
    if seen.mode == "bloom":
        batch = _positive(settings, "CRAWLER_BATCH_SIZE", int)
        if seen.bloom_capacity < batch:
            raise ConfigError(
                f"CRAWLER_BLOOM_CAPACITY={seen.bloom_capacity} must be at least "
                f"CRAWLER_BATCH_SIZE={batch}."
            )
    return seen


def crawl_keys(settings: BaseSettings, name: str) -> Keys:
    """The key names of crawl *name* under these settings."""
    start_key = (
        _get(settings, "CRAWLER_START_URLS_KEY")
        or settings.get("REDIS_START_URLS_KEY")
        or scrapy_redis_defaults.START_URLS_KEY
    )
    # scrapy-redis's REDIS_START_URLS_BATCH_SIZE caps one lease of raw seeds.
    batch = settings.getint("REDIS_START_URLS_BATCH_SIZE", 0)
    return make_keys(
        name, _positive(settings, "CRAWLER_SEEN_SHARDS", int), start_key, max(batch, 0)
    )


@dataclass(frozen=True)
class CrawlConfig:
    """Typed view of the CRAWLER_* settings for one crawl."""

    name: str
    keys: Keys
    batch_size: int
    finish_grace: float
    flush_interval: float
    commit_wait: float
    item_key: str
    keep_alive: bool
    lease_ms: int
    renew_interval: float
    local_seen_cache: int
    max_deliveries: int
    meta_classes: frozenset[str]
    prefetch: int
    request_classes: frozenset[str]
    seed_allowed_meta: frozenset[str]
    seed_max_url_length: int
    seen: SeenConfig
    stop_timeout: float
    policy: Policy
    robots_ttl: float
    max_crawl_delay: float
    backoff_retries: int
    backoff_retries_503: int
    concurrency: int = 16  # CONCURRENT_REQUESTS: requests a node processes at once
    partition_count: int = 1  # CRAWLER_PARTITIONS, for a crawl that has none recorded
    crawl_ttl: float = 0.0  # CRAWLER_CRAWL_TTL (crawler.jobs)
    recrawl: bool = False  # CRAWLER_RECRAWL_AFTER or _DOMAINS set (crawler.recrawl)
    # CLOSESPIDER_* counted over the cluster (crawler.closelimits)
    close_limits: CloseLimits = field(default_factory=CloseLimits)
    # The crawl's partition tags as recorded in Redis (crawler.partitions);
    # () for a crawl of one partition.
    parts: tuple[str, ...] = ()

    def partitions(self) -> list[Keys]:
        """The key names of each of the crawl's partitions."""
        return partition_keys(self.keys, self.parts)

    def keys_for(self, domain: str) -> Keys:
        """The key names of the partition holding *domain*'s state."""
        if not self.parts:
            return self.keys
        return self.partitions()[partition_of(domain, len(self.parts))]

    @classmethod
    def from_settings(cls, settings: BaseSettings, spider_name: str) -> CrawlConfig:
        warn_unknown(settings)
        name = _get(settings, "CRAWLER_CRAWL_NAME") or spider_name
        if not name or any(c in name for c in "{}\r\n "):
            raise ConfigError(
                f"crawl name {name!r} cannot be used in Redis keys; use a spider name "
                "or CRAWLER_CRAWL_NAME without braces, spaces or newlines."
            )
        lease = _positive(settings, "CRAWLER_LEASE_TIME")
        renew = _positive(settings, "CRAWLER_LEASE_RENEW_INTERVAL")
        if renew >= lease:
            raise ConfigError(
                f"CRAWLER_LEASE_RENEW_INTERVAL={renew} must be shorter than "
                f"CRAWLER_LEASE_TIME={lease}, or live nodes lose their leases."
            )
        prefetch = _count(settings, "CRAWLER_PREFETCH") or settings.getint(
            "CONCURRENT_REQUESTS", 16
        )
        return cls(
            name=name,
            keys=crawl_keys(settings, name),
            batch_size=_positive(settings, "CRAWLER_BATCH_SIZE", int),
            finish_grace=_non_negative(settings, "CRAWLER_FINISH_GRACE"),
            flush_interval=_positive(settings, "CRAWLER_FLUSH_INTERVAL"),
            commit_wait=_non_negative(settings, "CRAWLER_COMMIT_WAIT"),
            item_key=str(_get(settings, "CRAWLER_ITEM_KEY") or ""),
            keep_alive=settings.getbool("CRAWLER_KEEP_ALIVE", default_settings.CRAWLER_KEEP_ALIVE),
            lease_ms=int(lease * 1000),
            renew_interval=renew,
            local_seen_cache=_count(settings, "CRAWLER_LOCAL_SEEN_CACHE"),
            max_deliveries=_positive(settings, "CRAWLER_MAX_DELIVERIES", int),
            meta_classes=allow_list_entries(settings),
            prefetch=max(1, prefetch),
            request_classes=_names(settings, "CRAWLER_REQUEST_CLASSES"),
            seed_allowed_meta=_names(settings, "CRAWLER_SEED_ALLOWED_META"),
            seed_max_url_length=_positive(settings, "CRAWLER_SEED_MAX_URL_LENGTH", int),
            seen=_seen(settings),
            stop_timeout=_positive(settings, "CRAWLER_STOP_TIMEOUT"),
            policy=Policy.from_settings(settings),
            robots_ttl=_positive(settings, "CRAWLER_ROBOTSTXT_TTL"),
            max_crawl_delay=_non_negative(settings, "CRAWLER_MAX_CRAWL_DELAY"),
            backoff_retries=_count(settings, "CRAWLER_BACKOFF_RETRIES"),
            backoff_retries_503=_count(settings, "CRAWLER_BACKOFF_RETRIES_503"),
            concurrency=settings.getint("CONCURRENT_REQUESTS", 16),
            partition_count=_partitions(settings),
            close_limits=CloseLimits.from_settings(settings),
            crawl_ttl=_non_negative(settings, "CRAWLER_CRAWL_TTL"),
            recrawl=_non_negative(settings, "CRAWLER_RECRAWL_AFTER") > 0
            or bool(_recrawl_domains(settings)),
        )
