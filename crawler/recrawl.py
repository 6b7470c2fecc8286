"""Recrawl: pages come due again, are fetched conditionally, and changed
pages' items replace their old ones.

With ``CRAWLER_RECRAWL_AFTER`` (or ``recrawl_after`` in a request's meta, or
a domain's entry in ``CRAWLER_RECRAWL_DOMAINS``) a fetched page is written
back to Redis, in the commit that acknowledges it, as a request due again
after that many seconds: ``{N}:due`` (ZSET fingerprint -> due, ms on Redis's
clock) and ``{N}:duereq`` (HASH fingerprint -> "<priority>|<entry>"). Each
node moves due requests into the frontier once a second
(``crawler/lua/due_move.lua``), past the seen-set, so they are leased under
the same politeness as any other; "seen" means seen within the revisit
interval.

The request written back carries the page's validators (``If-None-Match``
from ``ETag``, ``If-Modified-Since`` from ``Last-Modified``) and, in
``meta["crawler_recrawl"]``, a hash of its body, its interval and counts. A
304 answer, or a body with the same hash, is unchanged: the callback is not
called for a 304 and the page's items stand. A changed page's items replace
the old ones (latest wins; ``scrapy export --follow`` writes every version).
With ``CRAWLER_RECRAWL_ADAPTIVE`` the interval halves when the page changed
and grows by half when it did not, within ``CRAWLER_RECRAWL_MIN`` and
``CRAWLER_RECRAWL_MAX`` (Nutch's AdaptiveFetchSchedule, simplified).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response
from scrapy.settings import BaseSettings

from crawler.exceptions import ConfigError
from crawler.itemids import AFTER, CHANGED, STATE
from crawler.politeness import domain_name, slot_of
from crawler.scheduler import REQUEUE, RedisScheduler, redis_scheduler

logger = logging.getLogger(__name__)

_GROW, _SHRINK = 1.5, 0.5
# Headers of the request as sent that are not stored with the revisit: the
# old validators, and what Scrapy's middlewares add again on the way out
# (cookies from the jar, proxy credentials, the accepted encodings).
_NOT_KEPT = (
    b"If-None-Match",
    b"If-Modified-Since",
    b"Cookie",
    b"Proxy-Authorization",
    b"Accept-Encoding",
)


@dataclass(frozen=True)
class RecrawlPolicy:
    after: float = 0.0
    adaptive: bool = False
    low: float = 60.0
    high: float = 30 * 86400.0
    domains: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: BaseSettings) -> RecrawlPolicy:
        domains = settings.getdict("CRAWLER_RECRAWL_DOMAINS")
        try:
            per_domain = {domain_name(str(d)): float(s) for d, s in domains.items()}
        except (TypeError, ValueError):
            raise ValueError(
                f"CRAWLER_RECRAWL_DOMAINS={domains!r} must map domains to seconds, "
                'e.g. {"example.com": 3600}'
            ) from None
        low = settings.getfloat("CRAWLER_RECRAWL_MIN")
        high = settings.getfloat("CRAWLER_RECRAWL_MAX")
        if not 0 < low <= high:
            raise ValueError(
                f"CRAWLER_RECRAWL_MIN={low} and CRAWLER_RECRAWL_MAX={high}: need "
                "0 < MIN <= MAX (seconds)"
            )
        return cls(
            after=max(0.0, settings.getfloat("CRAWLER_RECRAWL_AFTER")),
            adaptive=settings.getbool("CRAWLER_RECRAWL_ADAPTIVE"),
            low=low,
            high=high,
            domains=per_domain,
        )

    @property
    def enabled(self) -> bool:
        return self.after > 0 or any(s > 0 for s in self.domains.values())

    def base_interval(self, request: Request) -> float:
        """Seconds until *request*'s page is due again (0: never)."""
        if request.meta.get(AFTER) is not None:
            return max(0.0, float(request.meta[AFTER]))
        return self.domains.get(slot_of(request), self.after)

    def next_interval(self, request: Request, previous: float | None, changed: bool) -> float:
        base = self.base_interval(request)
        if not base or not self.adaptive or previous is None:
            return base
        step = _SHRINK if changed else _GROW
        return min(self.high, max(self.low, previous * step))


def body_hash(body: bytes) -> str:
    return hashlib.blake2b(body, digest_size=8).hexdigest()


def revisit_request(request: Request, response: Response, state: dict[str, Any]) -> Request:
    """*request* as it is sent next time: with the page's validators."""
    headers = request.headers.copy()
    for name in _NOT_KEPT:
        headers.pop(name, None)
    etag = response.headers.get(b"ETag")
    modified = response.headers.get(b"Last-Modified")
    if response.status == 304:  # the validators sent still hold
        etag = etag or request.headers.get(b"If-None-Match")
        modified = modified or request.headers.get(b"If-Modified-Since")
    if etag:
        headers[b"If-None-Match"] = etag
    if modified:
        headers[b"If-Modified-Since"] = modified
    meta = {
        k: v
        for k, v in request.meta.items()
        if k not in (REQUEUE, CHANGED) and not k.startswith(("redirect_", "retry_", "backoff_"))
    }
    meta[STATE] = state
    return request.replace(headers=headers, meta=meta)


class RecrawlMiddleware:
    """Downloader middleware: writes each fetched frontier page back as due
    again, tells changed pages from unchanged ones, and ends a 304 here."""

    def __init__(self, crawler: Crawler, policy: RecrawlPolicy) -> None:
        self.crawler = crawler
        self.policy = policy

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> RecrawlMiddleware:
        try:
            policy = RecrawlPolicy.from_settings(crawler.settings)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        return cls(crawler, policy)

    def _scheduler(self) -> RedisScheduler | None:
        return redis_scheduler(self.crawler)

    def process_response(self, request: Request, response: Response) -> Response:
        previous = request.meta.get(STATE) or {}
        if not previous and not self.policy.base_interval(request):
            return response  # not revisited
        scheduler = self._scheduler()
        if scheduler is None or request not in scheduler.active:
            return response  # robots.txt and the like, or not from the frontier
        if 300 <= response.status < 400 and response.status != 304:
            return response  # a redirect: the page it leads to is revisited
        if response.status >= 400:
            # Tried again after the interval, its state as it was.
            again = previous.get("i") or self.policy.base_interval(request)
            if again:
                scheduler.revisit(revisit_request(request, response, previous), again)
            return response
        stats = self.crawler.stats
        assert stats is not None
        digest = previous.get("h") if response.status == 304 else body_hash(response.body)
        changed = bool(previous) and digest != previous.get("h")
        if previous:
            stats.inc_value("recrawl/revisits")
            stats.inc_value("recrawl/changed" if changed else "recrawl/unchanged")
            if response.status == 304:
                stats.inc_value("recrawl/not_modified")
        interval = self.policy.next_interval(request, previous.get("i"), changed)
        if interval > 0:
            state = {
                "h": digest,
                "i": round(interval, 3),
                "v": int(previous.get("v", 0)) + 1,
                "c": int(previous.get("c", 0)) + int(changed),
            }
            scheduler.revisit(revisit_request(request, response, state), interval)
        if response.status == 304 and previous:
            raise IgnoreRequest(f"Not modified since the last visit (304): {request.url}")
        if changed:
            request.meta[CHANGED] = True
        return response
