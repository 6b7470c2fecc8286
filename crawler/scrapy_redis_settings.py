"""What becomes of each scrapy-redis setting left in a project: one log
block at a node's start lists every one found and what replaces it.

The README's "Coming from scrapy-redis" table says the same.
"""

from __future__ import annotations

import logging
from typing import Any

from scrapy import Spider
from scrapy.settings import BaseSettings
from scrapy.utils.misc import load_object
from scrapy_redis import defaults as scrapy_redis_defaults
from scrapy_redis.spiders import RedisMixin

from crawler.redact import redact_text

logger = logging.getLogger("crawler.scrapy_redis")

_COMPONENTS = ("ITEM_PIPELINES", "EXTENSIONS", "SPIDER_MIDDLEWARES", "DOWNLOADER_MIDDLEWARES")
_PIPELINE = "scrapy_redis.pipelines.RedisPipeline"
_STATS = "scrapy_redis.stats.RedisStatsCollector"
_RESET = "`scrapy reset SPIDER` starts a crawl over"
_MIGRATE = "`scrapy migrate SPIDER --from-scrapy-redis` imports a scrapy-redis crawl's state"

# Settings the framework replaces: (name, what replaces it).
_REPLACED = (
    (
        "SCHEDULER_PERSIST",
        "the frontier and seen-set always persist (a node closing must not wipe "
        f"the others' work); {_RESET}",
    ),
    ("SCHEDULER_FLUSH_ON_START", f"not done (it would wipe the other nodes' work); {_RESET}"),
    (
        "SCHEDULER_QUEUE_CLASS",
        "replaced by the frontier's priority queues (highest priority first, "
        "first in first out within one)",
    ),
    ("SCHEDULER_QUEUE_KEY", f"not used: the crawl's keys are {{NAME}}:*; {_MIGRATE}"),
    ("SCHEDULER_DUPEFILTER_KEY", f"not used: the seen-set is {{NAME}}:seen:*; {_MIGRATE}"),
    ("SCHEDULER_SERIALIZER", "not used: requests are stored as JSON, never pickled"),
    (
        "SCHEDULER_IDLE_BEFORE_CLOSE",
        "not needed: nodes never block on Redis; an idle cluster finishes after "
        "CRAWLER_FINISH_GRACE seconds",
    ),
)
# Settings honoured as scrapy-redis honours them: (name, how).
_HONOURED = (
    ("REDIS_START_URLS_KEY", "honoured: the seed key of spiders without a redis_key"),
    ("REDIS_START_URLS_AS_SET", "honoured: the seed key is read as the type it has (SPOP)"),
    ("REDIS_START_URLS_AS_ZSET", "honoured: the seed key is read as the type it has (ZPOPMAX)"),
    ("REDIS_START_URLS_BATCH_SIZE", "honoured: at most this many seeds per lease"),
    ("REDIS_ENCODING", "honoured: seeds are decoded with it"),
    ("REDIS_HOST", "honoured (with REDIS_PORT; localhost by default) when no REDIS_URL is given"),
    ("REDIS_PORT", "honoured (with REDIS_HOST; 6379 by default) when no REDIS_URL is given"),
    ("REDIS_DB", "honoured: for the framework's connection too"),
    ("REDIS_DECODE_RESPONSES", "honoured by scrapy-redis's own clients only"),
    ("REDIS_ITEMS_KEY", "honoured by RedisPipeline"),
    ("REDIS_ITEMS_SERIALIZER", "honoured by RedisPipeline"),
    ("STATS_KEY", "honoured by RedisStatsCollector"),
)


# Settings the framework reads for itself too (see crawler.connection).
_FRAMEWORK = ("REDIS_HOST", "REDIS_PORT")


def component_path(value: Any) -> str:
    """The import path of a component given as a path or a class."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', '')}"


def from_scrapy_redis(value: Any, base: str) -> bool:
    """Whether a component setting names scrapy-redis's class *base* (an
    import path) or a subclass of it."""
    path = component_path(value)
    if not path or path.startswith("crawler."):
        return False
    if path == base or path.startswith("scrapy_redis."):
        return True
    try:
        cls = load_object(value) if isinstance(value, str) else value
        return isinstance(cls, type) and issubclass(cls, load_object(base))
    except (ImportError, AttributeError, NameError, ValueError):
        return False  # Scrapy reports a bad path when it loads it


def _components(settings: BaseSettings) -> list[str]:
    paths = [component_path(settings.get(n)) for n in ("SCHEDULER", "DUPEFILTER_CLASS")]
    paths.append(component_path(settings.get("STATS_CLASS")))
    for name in _COMPONENTS:
        paths += [component_path(c) for c, order in settings.getdict(name).items() if order]
    return paths


def uses_scrapy_redis(settings: BaseSettings, spidercls: type | None) -> bool:
    """Whether a scrapy-redis spider or component is part of this crawl."""
    if spidercls is not None and issubclass(spidercls, RedisMixin):
        return True
    return any(p.startswith("scrapy_redis.") for p in _components(settings))


def report(settings: BaseSettings, spider: Spider, scheduler_was: str) -> None:
    """Log, once, every scrapy-redis setting found and what becomes of it
    (*scheduler_was*: the scrapy-redis scheduler replaced, or "")."""
    replaced, honoured = _entries(settings, spider, scheduler_was)
    if not replaced and not honoured:
        return
    lines = [f"  {name}: {what}" for name, what in replaced + honoured]
    level = logging.WARNING if replaced else logging.INFO
    logger.log(
        level,
        "scrapy-redis settings under crawler.addon.DistributedCrawl "
        "(see README, Coming from scrapy-redis):\n%s",
        redact_text("\n".join(lines)),
    )


def _entries(
    settings: BaseSettings, spider: Spider, scheduler_was: str
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(replaced, honoured): each a list of (setting, what becomes of it)."""
    honoured = [(n, what) for n, what in _HONOURED if n in settings and n not in _FRAMEWORK]
    if uses_scrapy_redis(settings, type(spider)):
        # Also the framework's own settings: named only when scrapy-redis is here.
        honoured += [(n, what) for n, what in _HONOURED if n in settings and n in _FRAMEWORK]
        honoured += _redis_url(settings)
    honoured += _redis_params(settings)
    honoured += _stats_class(settings)
    if isinstance(spider, RedisMixin):
        what = (
            f"seeds come from {spider.redis_key!r} through the frontier (leased, "
            "deduplicated, bad lines dead-lettered); its own Redis loop is off "
            "and nodes finish with the cluster"
        )
        honoured.append((f"{type(spider).__name__} (a scrapy-redis spider)", what))
    return _replaced(settings, spider, scheduler_was), honoured


def _replaced(settings: BaseSettings, spider: Spider, scheduler_was: str) -> list[tuple[str, str]]:
    replaced: list[tuple[str, str]] = []
    if scheduler_was:
        what = (
            "replaced by crawler.scheduler.RedisScheduler (one leased frontier "
            "for all nodes: a node's death loses nothing)"
        )
        replaced.append((f"SCHEDULER = {scheduler_was}", what))
    dupefilter = component_path(settings.get("DUPEFILTER_CLASS"))
    if from_scrapy_redis(dupefilter, "scrapy_redis.dupefilter.RFPDupeFilter"):
        what = "not used: the frontier's seen-set (CRAWLER_SEEN_MODE) dedupes across nodes"
        replaced.append((f"DUPEFILTER_CLASS = {dupefilter}", what))
    replaced += [(n, what) for n, what in _REPLACED if n in settings]
    return replaced + _idle(settings) + _pipeline(settings, spider)


def _idle(settings: BaseSettings) -> list[tuple[str, str]]:
    if "MAX_IDLE_TIME_BEFORE_CLOSE" not in settings:
        return []
    idle = settings.getint("MAX_IDLE_TIME_BEFORE_CLOSE")
    if idle > 0:
        grace = settings.get("CRAWLER_FINISH_GRACE")
        what = f"honoured as the finish grace: CRAWLER_FINISH_GRACE = {grace}"
    else:
        what = (
            "0 (wait for ever) is not used: nodes finish with the whole cluster; "
            "CRAWLER_KEEP_ALIVE = True keeps them waiting for new seeds"
        )
    return [("MAX_IDLE_TIME_BEFORE_CLOSE", what)]


def _pipeline(settings: BaseSettings, spider: Spider) -> list[tuple[str, str]]:
    pipelines = [component_path(c) for c, o in settings.getdict("ITEM_PIPELINES").items() if o]
    if _PIPELINE not in pipelines:
        return []
    key = settings.get("REDIS_ITEMS_KEY") or scrapy_redis_defaults.PIPELINE_KEY
    what = (
        f"kept: items are also pushed to {str(key) % {'spider': spider.name}!r}, but a "
        "page processed again after a node died pushes its items again; `scrapy "
        "export SPIDER` gives each item once"
    )
    return [(_PIPELINE, what)]


def _stats_class(settings: BaseSettings) -> list[tuple[str, str]]:
    if component_path(settings.get("STATS_CLASS")) != _STATS:
        return []
    what = (
        "kept (one blocking Redis call per stat change); `scrapy status SPIDER` "
        "shows the whole cluster's stats"
    )
    return [(f"STATS_CLASS = {_STATS}", what)]


def _redis_url(settings: BaseSettings) -> list[tuple[str, str]]:
    if not settings.get("REDIS_URL"):
        return []
    what = (
        f"scrapy-redis's components and the framework use {settings['REDIS_URL']} "
        "(-s REDIS_URL, then the REDIS_URL environment variable, then settings)"
    )
    return [("REDIS_URL", what)]


def _redis_params(settings: BaseSettings) -> list[tuple[str, str]]:
    params = settings.getdict("REDIS_PARAMS")
    if not params:
        return []
    shared = sorted(k for k in params if k in ("password", "username", "db"))
    own = sorted(k for k in params if k not in shared)
    what = f"{', '.join(shared) or 'nothing'} applied to every connection"
    if own:
        what += f"; {', '.join(own)} to scrapy-redis's own clients only"
    return [("REDIS_PARAMS", what)]
