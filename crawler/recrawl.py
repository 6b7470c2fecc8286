"""Recrawl: pages come due again, are fetched conditionally, and changed
pages' items replace their old ones.

With ``CRAWLER_RECRAWL_AFTER`` (or ``recrawl_after`` in a request's meta, or
a domain's entry in ``CRAWLER_RECRAWL_DOMAINS``) a fetched page is written
back to Redis, in the commit that acknowledges it, as a request due again
after that many seconds: ``{N}:due``, a ZSET of "<priority>|<entry>" by
due time (ms, Redis's clock). Each node moves due requests into the frontier once a second
(``crawler/lua/due_move.lua``), past the seen-set, so they are leased under
the same politeness as any other; "seen" means seen within the revisit
interval.

The request written back carries, in ``meta["crawler_recrawl"]``, 4 bytes
of its fingerprint (a state copied to another request's meta is not its
own), a hash of its body, its interval and its validators, sent as
``If-None-Match`` (from ``ETag``) and ``If-Modified-Since`` (from
``Last-Modified``). A
304 answer, or a body with the same hash, is unchanged: the callback is not
called (its items stand, its links are known). A changed page's items replace
the old ones (latest wins; ``scrapy export --follow`` writes every version),
and those it no longer yields are removed (``ItemIds.settle``: the state's
``n`` is how many callback positions its items took).
With ``CRAWLER_RECRAWL_ADAPTIVE`` the interval halves when the page changed
and grows by half when it did not, within ``CRAWLER_RECRAWL_MIN`` and
``CRAWLER_RECRAWL_MAX`` (Nutch's AdaptiveFetchSchedule, simplified).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from email.utils import formatdate, mktime_tz, parsedate_tz
from typing import Any

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Headers, Response
from scrapy.settings import BaseSettings

from crawler.deadletters import FailedResponses
from crawler.exceptions import ConfigError
from crawler.itemids import AFTER, STATE
from crawler.politeness import domain_name, slot_of
from crawler.scheduler import REQUEUE, RedisScheduler, redis_scheduler

logger = logging.getLogger(__name__)

_GROW, _SHRINK = 1.5, 0.5
# A revisit answered with one of these, which the spider does not handle:
# the page is gone, and so are its items.
_GONE = (404, 410)
# Headers and meta of a request as leased that are not stored with its
# revisit: the old validators, and what a retry or redirect left.
_NOT_KEPT = (b"If-None-Match", b"If-Modified-Since")
_NOT_KEPT_META = ("redirect_", "retry_", "backoff_")
# Meta Scrapy's downloader middlewares add, left out when the request was
# not noted as leased.
_ADDED_META = ("download_slot", "download_latency", "proxy", "_auth_proxy", "_scheme_proxy")
#: A request as it was leased: headers, meta, priority, dont_filter.
Leased = tuple[Any, dict[str, Any], int, bool]


class NotModified(IgnoreRequest):
    """A revisit found its page unchanged (a 304, or the same body): the
    callback is not called. An errback gets it; ``failure.check(NotModified)``
    tells it from a failure."""


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

    def base_interval(self, request: Request) -> float:
        """Seconds until *request*'s page is due again (0: never)."""
        value = request.meta.get(AFTER)
        if value is not None:
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                logger.warning(
                    "meta[%r]=%r of %s is not a number of seconds; using the settings.",
                    AFTER,
                    value,
                    request,
                )
        return self.domains.get(slot_of(request), self.after)

    def next_interval(self, request: Request, previous: float | None, changed: bool) -> float:
        base = self.base_interval(request)
        if not base or not self.adaptive:
            return base
        if previous is not None:
            base = previous * (_SHRINK if changed else _GROW)
        return min(self.high, max(self.low, base))


def body_hash(body: bytes) -> str:
    return hashlib.blake2b(body, digest_size=8).hexdigest()


def validators(response: Response, previous: dict[str, Any]) -> dict[str, Any]:
    """The page's validators, kept in its recrawl state: ``e`` its ETag,
    ``m`` its Last-Modified (seconds since the epoch when it parses). A 304
    keeps those that were sent."""
    if response.status == 304:
        return {k: previous[k] for k in ("e", "m") if k in previous}
    out: dict[str, Any] = {}
    etag = response.headers.get(b"ETag")
    if etag:
        out["e"] = etag.decode("latin-1")
    modified = response.headers.get(b"Last-Modified")
    if modified:
        value = _modified(modified.decode("latin-1").strip(), _date(response))
        if value is not None:
            out["m"] = value
    return out


def _date(response: Response) -> int:
    """When the server sent *response* (its ``Date``; else now), epoch seconds."""
    date = response.headers.get(b"Date")
    parsed = parsedate_tz(date.decode("latin-1")) if date else None
    if parsed is not None:
        try:
            return int(mktime_tz(parsed))
        except (OverflowError, ValueError):
            pass
    return int(time.time())


def _modified(text: str, sent: int) -> int | str | None:
    """A Last-Modified as epoch seconds when it is an IMF-fixdate that comes
    back the same (the common case, 20 bytes fewer); else as it came. None
    (no validator) when it is later than the answer's Date (*sent*: a file
    dated in the future, which RFC 9110 8.8.2.1 has the server replace with
    the Date): sent back, servers that answer 304 to any If-Modified-Since
    not before the file's date (Python's http.server) hid every change made
    until then; capped at the Date, a change within the same second as the
    first fetch was hidden. The body's hash tells a change instead."""
    parsed = parsedate_tz(text)
    if parsed is not None:
        try:
            epoch = int(mktime_tz(parsed))
        except (OverflowError, ValueError):
            return text
        if epoch > sent:
            return None
        if parsed[9] == 0 and formatdate(epoch, usegmt=True) == text:
            return epoch
    return text


def conditional_headers(state: dict[str, Any]) -> dict[bytes, bytes]:
    """``If-None-Match`` and ``If-Modified-Since`` from a recrawl state, as
    the bytes the site sent (stored as latin-1 text)."""
    out = {}
    if state.get("e"):
        out[b"If-None-Match"] = str(state["e"]).encode("latin-1", "replace")
    modified = state.get("m")
    if isinstance(modified, int):
        out[b"If-Modified-Since"] = formatdate(modified, usegmt=True).encode()
    elif modified:
        out[b"If-Modified-Since"] = str(modified).encode("latin-1", "replace")
    return out


def revisit_request(
    request: Request, leased: Leased | None, state: dict[str, Any], retry_adjust: int = -1
) -> Request:
    """*request* as it is sent next time: as it was leased (not as the
    downloader middlewares left it: no cookies, credentials, proxy, download
    slot or lowered retry priority), with its recrawl *state* (validators
    included: the headers are added when it is sent). A retry is leased with
    its priority lowered by RETRY_PRIORITY_ADJUST (*retry_adjust*) per retry:
    the page's own is restored, or it sank one level each failing cycle."""
    if leased is None:  # not noted at lease time: strip what we know of
        meta = {k: v for k, v in request.meta.items() if k not in _ADDED_META}
        leased = (request.headers, meta, request.priority, request.dont_filter)
    headers0, meta0, priority, dont_filter = leased
    retries = meta0.get("retry_times")
    adjust = meta0.get("priority_adjust", retry_adjust)  # as RetryMiddleware reads it
    if type(retries) is int and retries > 0 and type(adjust) is int:
        priority -= adjust * retries
    headers = Headers(headers0)
    for name in _NOT_KEPT:
        headers.pop(name, None)
    meta = {
        k: v
        for k, v in meta0.items()
        if k not in (REQUEUE, STATE) and not k.startswith(_NOT_KEPT_META)
    }
    meta[STATE] = state
    return request.replace(headers=headers, meta=meta, priority=priority, dont_filter=dont_filter)


def _redirect(response: Response) -> bool:
    """A 3xx that sends the request elsewhere (not a 304)."""
    return 300 <= response.status < 400 and response.status != 304


class RecrawlMiddleware:
    """Downloader middleware: writes each fetched frontier page back as due
    again, tells changed pages from unchanged ones, and ends an unchanged one
    here (NotModified)."""

    def __init__(self, crawler: Crawler, policy: RecrawlPolicy) -> None:
        self.crawler = crawler
        self.policy = policy
        self.retry_adjust = crawler.settings.getint("RETRY_PRIORITY_ADJUST")
        self.failed = FailedResponses(crawler)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> RecrawlMiddleware:
        try:
            policy = RecrawlPolicy.from_settings(crawler.settings)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        return cls(crawler, policy)

    def _previous(self, request: Request) -> tuple[str, dict[str, Any]]:
        """(fingerprint, this page's recrawl state): a state copied from
        another request's meta (``meta=response.meta``) is not its own."""
        # 4 bytes are plenty to tell a page's own state from a copied one.
        fp = self.crawler.request_fingerprinter.fingerprint(request)[:4].hex()
        state = request.meta.get(STATE)
        return fp, state if isinstance(state, dict) and state.get("f") == fp else {}

    def _frontier(self, request: Request) -> RedisScheduler | None:
        """The scheduler, if *request* was leased from the frontier."""
        scheduler = redis_scheduler(self.crawler)
        if scheduler is None or request not in scheduler.active:
            return None  # robots.txt and the like
        return scheduler

    def process_request(self, request: Request) -> None:
        """A revisit asks conditionally, with the validators its page had."""
        if STATE in request.meta:
            _, previous = self._previous(request)
            for name, value in conditional_headers(previous).items():
                request.headers[name] = value
            # A revisit asks the site, not Scrapy's HTTP cache (whose default
            # DummyPolicy answers every request from the copy it stored).
            request.meta["dont_cache"] = True

    def process_response(self, request: Request, response: Response) -> Response:
        if STATE not in request.meta and not self.policy.base_interval(request):
            return response  # not revisited
        scheduler = self._frontier(request)
        if scheduler is None or _redirect(response):
            return response  # a redirect: the page it leads to is revisited
        fp, previous = self._previous(request)
        if response.status >= 400:
            if previous:
                # The error is the page's version now: the items a spider
                # yields for it (handle_httpstatus_list) replace the old, and
                # the page coming back (asked unconditionally) has changed.
                # Its status in the hash: the page answering as before with
                # the same body (a site that sends its pages' HTML with the
                # 404) is a change too, or its items, gone, never came back.
                error = f"{response.status}:{body_hash(response.body)}"
                broken = {"f": fp, "h": error, "i": previous.get("i")}
                if "n" in previous:
                    broken["n"] = previous["n"]
                self._keep_schedule(scheduler, request, fp, broken)
                replaced = self._replaced(request, response)
                scheduler.items.mark_changed(request, previous.get("n"), replaced)
            return response
        digest = previous.get("h") if response.status == 304 else body_hash(response.body)
        changed = bool(previous) and digest != previous.get("h")
        self._count(previous, changed, response.status)
        interval = self.policy.next_interval(request, previous.get("i"), changed)
        if interval > 0:
            every = round(interval, 3)
            state = {"f": fp, "h": digest, "i": int(every) if every == int(every) else every}
            if "n" in previous:  # its items' positions (crawler.itemids.settle)
                state["n"] = previous["n"]
            state.update(validators(response, previous))
            leased = scheduler.leased_as.get(request)
            again = revisit_request(request, leased, state, self.retry_adjust)
            scheduler.revisit(again, interval, request)
        if previous and not changed:
            # 304, or the same body: its items stand, its links are known.
            why = "304" if response.status == 304 else "same content"
            raise NotModified(f"Unchanged since the last visit ({why}): {request.url}")
        if changed:
            scheduler.items.mark_changed(request, previous.get("n"))
        return response

    def _replaced(self, request: Request, response: Response) -> bool:
        """Whether the page's old items go, for a revisit answered with an
        error: those its callback yields replace them when it handles the
        status (``handle_httpstatus_list``); else (HttpErrorMiddleware
        drops it before the callback) a 404 or a 410 says the page is gone,
        and its items go with it, while any other (a 500, a 503, a 403)
        may pass and keeps them."""
        return not self.failed.withheld(response, request) or response.status in _GONE

    def process_exception(self, request: Request, exception: Exception) -> None:
        """A revisit that failed (after its retries) stays on the schedule."""
        if isinstance(exception, IgnoreRequest) or STATE not in request.meta:
            return
        scheduler = self._frontier(request)
        if scheduler is not None:
            self._keep_schedule(scheduler, request, *self._previous(request))

    def _keep_schedule(
        self, scheduler: RedisScheduler, request: Request, fp: str, previous: dict[str, Any]
    ) -> None:
        """A revisit that failed: tried again after its interval, as it was."""
        if previous:
            leased = scheduler.leased_as.get(request)
            again = revisit_request(request, leased, previous, self.retry_adjust)
            after = float(previous.get("i") or 0) or self.policy.after or 60
            scheduler.revisit(again, after, request)

    def _count(self, previous: dict[str, Any], changed: bool, status: int) -> None:
        if not previous:
            return
        stats = self.crawler.stats
        assert stats is not None
        stats.inc_value("recrawl/revisits")
        stats.inc_value("recrawl/changed" if changed else "recrawl/unchanged")
        if status == 304:
            stats.inc_value("recrawl/not_modified")


class RecrawlRedirectMiddleware(RecrawlMiddleware):
    """Downloader middleware, before RedirectMiddleware: a revisit answered
    with a redirect stays on the schedule as it was (a 302 to a maintenance
    or login page is not the end of a page; the page it leads to is
    revisited on its own). A first fetch answered with a redirect goes on
    the schedule too: the URL was linked, and where it leads may change
    (``/latest`` to today's article); the seen-set would keep it from being
    fetched again for good."""

    def process_request(self, request: Request) -> None:
        return None

    def process_response(self, request: Request, response: Response) -> Response:
        if not _redirect(response):
            return response
        scheduler = self._frontier(request)
        if scheduler is None:
            return response
        fp, previous = self._previous(request)
        if previous:
            self._keep_schedule(scheduler, request, fp, previous)
            return response
        interval = self.policy.next_interval(request, None, False)
        if interval > 0:
            every = round(interval, 3)
            state = {"f": fp, "i": int(every) if every == int(every) else every}
            leased = scheduler.leased_as.get(request)
            again = revisit_request(request, leased, state, self.retry_adjust)
            scheduler.revisit(again, interval, request)
        return response

    def process_exception(self, request: Request, exception: Exception) -> None:
        return None
