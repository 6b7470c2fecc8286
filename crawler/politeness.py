"""Cluster-wide politeness: the per-domain policy and how requests carry their domain.

Scrapy applies ``DOWNLOAD_DELAY``, ``CONCURRENT_REQUESTS_PER_DOMAIN``,
``DOWNLOAD_DELAY_JITTER`` (or ``RANDOMIZE_DOWNLOAD_DELAY``), per-slot
``DOWNLOAD_SLOTS`` and AutoThrottle in each process. Here the same settings
hold for the whole cluster: the frontier hands out a domain's next request
only when the domain may be fetched again (``crawler/lua/_polite.lua``), and
each node's own downloader applies no delay or per-domain limit of its own.

A frontier entry names its domain (its Scrapy download slot):
``"<deliveries>|<slot>|<request JSON>"``.
"""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass, field
from typing import Any

from scrapy import Request, Spider
from scrapy.settings import BaseSettings
from scrapy.settings.default_settings import DOWNLOAD_DELAY_JITTER
from scrapy.utils.httpobj import urlparse_cached

from crawler import default_settings
from crawler.codec import encode_request
from crawler.exceptions import ConfigError

#: The domain of requests whose ``download_slot`` is "": an entry with an
#: empty domain reads as its URL's host (make_entry).
EMPTY_SLOT = "(empty)"


def slot_of(request: Request) -> str:
    """The domain a request counts against: its ``download_slot`` or host name."""
    slot = request.meta.get("download_slot")
    if slot is not None:
        return domain_name(slot) or EMPTY_SLOT
    return domain_name(urlparse_cached(request).hostname)


def domain_name(slot: Any) -> str:
    """A download slot (or host name) as frontier entries name it, without ``|``."""
    return ("" if slot is None else str(slot)).replace("|", "_")


# The host of the URL an entry's JSON starts with, read exactly as
# _polite.lua's p_url_host reads it. An entry leaves its domain out when
# that host is the domain (the common case: about 10-17 bytes a request).
_URL_HOST = r'\{"url":"[^:"]*://([^/:?#"\\@]*)'
_URL_HOST_STR = re.compile(_URL_HOST)
_URL_HOST_BYTES = re.compile(_URL_HOST.encode())


def make_entry(slot: str, body: str, deliveries: int = 0) -> str:
    host = _URL_HOST_STR.match(body)
    if host is not None and host.group(1) == slot:
        slot = ""
    return f"{deliveries}|{slot}|{body}"


def request_entry(
    request: Request,
    spider: Spider,
    origin: bytes | None = None,
    by_content: bool = False,
    made_by: bytes = b"",
) -> str:
    """The frontier entry of a new request (*origin*, *by_content*, *made_by*:
    crawler.codec.encode_request). Raises ValueError/TypeError if it cannot
    be stored."""
    text = encode_request(request, spider, origin=origin, by_content=by_content, made_by=made_by)
    return make_entry(slot_of(request), text)


def held_domain(value: bytes) -> str:
    """The domain of a held or parked value, "<prio>|<entry>"."""
    return split_entry(value.partition(b"|")[2])[0]


def split_entry(entry: bytes) -> tuple[str, bytes]:
    """(slot, request JSON) of a frontier entry."""
    _, _, rest = entry.partition(b"|")
    slot, sep, body = rest.partition(b"|")
    if not sep:
        return "", rest
    if not slot:
        host = _URL_HOST_BYTES.match(body)
        slot = host.group(1) if host is not None else b""
    return slot.decode("utf-8", "replace"), body


def _number(name: str, raw: Any, minimum: float = 0.0) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={raw!r} is not a number; set it to a number.") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name}={raw!r} is not a finite number; set it to a number.")
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum:g}.")
    return value


def _jitter(settings: BaseSettings) -> float:
    """Scrapy's rule: ``RANDOMIZE_DOWNLOAD_DELAY`` wins when set at a higher priority."""
    randomize = settings.getpriority("RANDOMIZE_DOWNLOAD_DELAY") or 0
    jitter = settings.getpriority("DOWNLOAD_DELAY_JITTER") or 0
    if randomize > 0 and randomize > jitter:
        return 0.5 if settings.getbool("RANDOMIZE_DOWNLOAD_DELAY") else 0.0
    return _number(
        "DOWNLOAD_DELAY_JITTER", settings.get("DOWNLOAD_DELAY_JITTER", DOWNLOAD_DELAY_JITTER)
    )


#: A lease call also hands out requests whose domain is ready within this
#: many seconds (a domain with a delay, one paused), each with the time to
#: wait before sending it. A slow, polite crawl's domains come due one by
#: one: without it a node would ask Redis for each as it comes due (measured
#: with DOWNLOAD_DELAY=1 on 40 sites: 2.2 lease calls per page); with it one
#: call serves the next second's (tests/benchmarks/COSTS.md, section 7).
#: Off with AutoThrottle, whose delay moves with every latency reported.
LEASE_AHEAD = 1.0

#: Each gap between two starts at a domain gets a tenth of itself more, at
#: most this many seconds, for a request's send path after its download
#: handler is called (p_started in crawler/lua/_polite.lua says why).
SEND_MARGIN = 0.05


def with_send_margin(gap: float) -> float:
    """*gap* (seconds) with its send margin."""
    return gap + min(gap / 10, SEND_MARGIN)


@dataclass(frozen=True)
class Policy:
    """The per-domain limits every node applies, from Scrapy's settings."""

    delay: float
    concurrency: int
    jitter: float
    # slot -> (delay or None, concurrency or None, jitter or None)
    overrides: dict[str, tuple[float | None, int | None, float | None]] = field(
        default_factory=dict
    )
    # Page budget of every domain (0: none), and of some (DOWNLOAD_SLOTS).
    max_pages: int = 0
    slot_pages: dict[str, int] = field(default_factory=dict)
    # CLOSESPIDER_PAGECOUNT for the whole crawl (a partition's share of it).
    page_count: int = 0
    autothrottle: bool = False
    auto_start: float = 5.0
    auto_max: float = 60.0
    auto_target: float = 1.0
    backoff_base: float = 1.0
    backoff_max: float = 600.0
    robots: bool = False
    #: How far ahead a request whose domain is ready soon may be leased, to
    #: be sent when it is (crawler/lua/lease.lua).
    lease_ahead: float = LEASE_AHEAD

    @classmethod
    def from_settings(cls, settings: BaseSettings) -> Policy:
        delay = _number("DOWNLOAD_DELAY", settings.get("DOWNLOAD_DELAY", 0))
        concurrency = int(
            _number(
                "CONCURRENT_REQUESTS_PER_DOMAIN", settings.get("CONCURRENT_REQUESTS_PER_DOMAIN"), 1
            )
        )
        overrides: dict[str, tuple[float | None, int | None, float | None]] = {}
        slot_pages: dict[str, int] = {}
        slots = settings.getdict("DOWNLOAD_SLOTS")
        for slot, conf in slots.items():
            if not isinstance(conf, dict):
                raise ConfigError(
                    f"DOWNLOAD_SLOTS[{slot!r}]={conf!r} must be a dict such as "
                    '{"delay": 2.0, "concurrency": 1}.'
                )
            where = f"DOWNLOAD_SLOTS[{slot!r}]"
            if "max_pages" in conf:
                slot_pages[str(slot)] = int(_number(f"{where}['max_pages']", conf["max_pages"]))
            jit = conf.get("jitter")
            if jit is None and "randomize_delay" in conf:
                jit = 0.5 if conf["randomize_delay"] else 0.0
            overrides[str(slot)] = (
                _number(f"{where}['delay']", conf["delay"]) if "delay" in conf else None,
                int(_number(f"{where}['concurrency']", conf["concurrency"], 1))
                if "concurrency" in conf
                else None,
                _number(f"{where}['jitter']", jit) if jit is not None else None,
            )
        auto = settings.getbool("AUTOTHROTTLE_ENABLED")
        target = _number(
            "AUTOTHROTTLE_TARGET_CONCURRENCY", settings.get("AUTOTHROTTLE_TARGET_CONCURRENCY", 1.0)
        )
        if auto and target <= 0:
            raise ConfigError(f"AUTOTHROTTLE_TARGET_CONCURRENCY={target!r} must be higher than 0.")
        base = _number(
            "CRAWLER_BACKOFF_BASE",
            settings.get("CRAWLER_BACKOFF_BASE", default_settings.CRAWLER_BACKOFF_BASE),
        )
        most = _number(
            "CRAWLER_BACKOFF_MAX",
            settings.get("CRAWLER_BACKOFF_MAX", default_settings.CRAWLER_BACKOFF_MAX),
        )
        return cls(
            delay=delay,
            concurrency=concurrency,
            jitter=_jitter(settings),
            overrides=overrides,
            autothrottle=auto,
            auto_start=max(
                delay,
                _number("AUTOTHROTTLE_START_DELAY", settings.get("AUTOTHROTTLE_START_DELAY", 5.0)),
            ),
            auto_max=_number(
                "AUTOTHROTTLE_MAX_DELAY", settings.get("AUTOTHROTTLE_MAX_DELAY", 60.0)
            ),
            auto_target=target or 1.0,
            backoff_base=base,
            backoff_max=most,
            robots=settings.getbool("ROBOTSTXT_OBEY"),
            max_pages=int(
                _number(
                    "CRAWLER_DOMAIN_MAX_PAGES",
                    settings.get(
                        "CRAWLER_DOMAIN_MAX_PAGES", default_settings.CRAWLER_DOMAIN_MAX_PAGES
                    ),
                )
            ),
            slot_pages=slot_pages,
            page_count=settings.getint("CLOSESPIDER_PAGECOUNT"),
        )

    def _override(self, slot: str, index: int) -> Any:
        """Field *index* (delay, concurrency, jitter) of *slot*'s DOWNLOAD_SLOTS
        entry, or None if it does not set it."""
        override = self.overrides.get(slot)
        return None if override is None else override[index]

    @property
    def may_delay(self) -> bool:
        """Whether any domain may have a delay: the configured one, a
        DOWNLOAD_SLOTS one, AutoThrottle's or a robots.txt Crawl-delay."""
        delays = (o[0] for o in self.overrides.values())
        return self.delay > 0 or self.autothrottle or self.robots or any(d for d in delays)

    def jitter_of(self, slot: str) -> float:
        jitter = self._override(slot, 2)
        return self.jitter if jitter is None else float(jitter)

    def delay_of(self, slot: str) -> float:
        delay = self._override(slot, 0)
        return self.delay if delay is None else float(delay)

    def concurrency_of(self, slot: str) -> int:
        concurrency = self._override(slot, 1)
        return self.concurrency if concurrency is None else int(concurrency)

    def factor(self, slot: str) -> float:
        """A random multiplier of the domain's delay, as Scrapy's jitter draws it."""
        jitter = self.jitter_of(slot)
        return max(0.0, 1 + random.uniform(-jitter, jitter)) if jitter else 1.0

    def to_lua(self) -> str:
        """The policy as the Lua scripts read it (times in ms)."""
        return json.dumps(
            {
                "d": int(self.delay * 1000),
                "c": self.concurrency,
                "o": {
                    slot: [
                        -1 if d is None else int(d * 1000),
                        -1 if c is None else c,
                        self.slot_pages.get(slot, -1),
                    ]
                    for slot, (d, c, _) in self.overrides.items()
                },
                "mp": self.max_pages,
                "pc": self.page_count,
                "at": int(self.autothrottle),
                "as": int(self.auto_start * 1000),
                "ax": int(self.auto_max * 1000),
                "tc": self.auto_target,
                "bb": int(self.backoff_base * 1000),
                "bx": int(self.backoff_max * 1000),
                "rb": int(self.robots),
                # Not with AutoThrottle: a delay that moves with every
                # latency must time a request when it is sent.
                "la": 0 if self.autothrottle else int(self.lease_ahead * 1000),
                "sm": int(SEND_MARGIN * 1000),
            },
            separators=(",", ":"),
        )
