"""The things the framework needs from Scrapy's engine that it has no
public API for, kept in one place and checked when a node starts.

* Which requests are still being processed. Scrapy keeps a request in the
  engine slot's ``inprogress`` set from download until its callback has
  finished and every item it yielded has left the item pipelines; that is
  exactly when a lease may be acknowledged.
* Waking the engine when work arrives from Redis while it is idle, instead
  of waiting for its 5-second heartbeat.
* Turning off the downloader's per-node politeness, which the cluster
  applies instead (``cluster_politeness``).
* Whether the downloader would queue a request behind others
  (``would_wait``): its per-IP slots, and how it keys a request to one.
* When a request leaves the downloader's queue for its download handler
  (``on_send``): Scrapy signals only its arrival in the downloader, where
  with CONCURRENT_REQUESTS_PER_IP it may wait behind other domains' pages.
* A spider raising CloseSpider (``watch_close_spider``), which closes the
  whole crawl's run, not only the node it ran on.
* Seeing how each request ended (``watch_spider_calls``): Scrapy hands every
  download outcome, a response or a failure, to its scraper's
  ``call_spider_async`` (public since 2.13), but a failure raised by a
  downloader middleware's ``process_response`` reaches no middleware, and
  what an errback yields skips the spider middlewares.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from scrapy import Request
from scrapy.core.downloader import Slot, _slot_jitter
from scrapy.exceptions import CloseSpider
from twisted.internet.defer import succeed
from twisted.python.failure import Failure

from crawler.exceptions import ConfigError


def check_engine(engine: Any) -> None:
    slot = getattr(engine, "_slot", None)
    if slot is None or not hasattr(slot, "inprogress") or not hasattr(slot, "nextcall"):
        raise ConfigError(
            "this Scrapy version's engine has no slot.inprogress/nextcall; "
            "install a Scrapy version allowed by requirements.txt."
        )


def cluster_politeness(engine: Any, leased: Callable[[Request], bool]) -> None:
    """Turn off the node's own per-domain delay and concurrency limit for
    the requests the frontier hands out (*leased*): the frontier applies
    DOWNLOAD_DELAY, CONCURRENT_REQUESTS_PER_DOMAIN and DOWNLOAD_SLOTS to the
    whole cluster, and a request it hands out must be sent at once (its
    start is what times the domain's next request).
    CONCURRENT_REQUESTS (per node) and CONCURRENT_REQUESTS_PER_IP still apply.

    A request the frontier never saw (``engine.download()``: FilesPipeline
    and ImagesPipeline, a callback's own downloads, robots.txt) keeps
    Scrapy's own per-domain delay and concurrency on its node, in a slot of
    its own: with the limits lifted for every request, a polite crawl's
    files went to the site all at once."""
    downloader = getattr(engine, "downloader", None)
    names = (
        "_delay",
        "_jitter",
        "per_slot_settings",
        "domain_concurrency",
        "total_concurrency",
        "ip_concurrency",
        "slots",
        "get_slot_key",
        "_get_slot",
        "_start_slot_gc",
    )
    if downloader is None or not all(hasattr(downloader, n) for n in names):
        raise ConfigError(
            f"this Scrapy version's downloader has no {'/'.join(names)}; "
            "install a Scrapy version allowed by requirements.txt."
        )
    own = (
        downloader._delay,
        downloader._jitter,
        downloader.per_slot_settings,
        downloader.domain_concurrency,
    )
    downloader._delay = 0.0
    downloader._jitter = 0.0
    downloader.per_slot_settings = {}
    downloader.domain_concurrency = downloader.total_concurrency or 1_000_000
    cluster_slot = downloader._get_slot

    def get_slot(request: Request, spider: Any = None) -> tuple[str, Any]:
        if leased(request) or downloader.ip_concurrency:
            # Keyed by IP (CONCURRENT_REQUESTS_PER_IP): one slot per IP, so
            # the node keeps that limit (a slot of their own doubled it).
            return cluster_slot(request)
        key = downloader.get_slot_key(request)
        local = f"{key}{_LOCAL_SLOT}"  # never a host name: a key of its own
        if local not in downloader.slots:
            delay, jitter, per_slot, concurrency = own
            slot_settings = per_slot.get(key, {})
            downloader.slots[local] = Slot(
                slot_settings.get("concurrency", concurrency),
                slot_settings.get("delay", delay),
                _slot_jitter(slot_settings, jitter),
            )
            downloader._start_slot_gc()
        return key, downloader.slots[local]

    downloader._get_slot = get_slot


#: Suffix of the downloader slot keys of requests the frontier never saw.
_LOCAL_SLOT = "\x00local"


def would_wait(engine: Any, request: Request) -> bool:
    """Whether the downloader would queue *request* behind others: with
    CONCURRENT_REQUESTS_PER_IP, its slot (one per IP, shared by the domains
    on it) is full, counting the requests on their way to it (handed to
    the downloader and still in its middlewares: one awaiting robots.txt,
    or handed out a moment ago). Never without it: ``cluster_politeness``
    lifts the per-domain slots' limit."""
    downloader = getattr(engine, "downloader", None)
    if downloader is None or not getattr(downloader, "ip_concurrency", 0):
        return False
    key = downloader.get_slot_key(request)
    slot = downloader.slots.get(key)
    if slot is None:
        room, queued = downloader.ip_concurrency, set()
    else:
        # Its active requests: queued, being sent, or just answered.
        room, queued = slot.concurrency - len(slot.active), slot.active
    if room <= 0:
        return True
    coming = sum(
        1 for r in downloader.active if r not in queued and downloader.get_slot_key(r) == key
    )
    return coming >= room


def on_send(engine: Any, sending: Callable[[Request], None]) -> None:
    """Call *sending* with each request as its download handler is called:
    when it goes out, after any wait in the downloader's queue. Wraps both
    names Scrapy has called the handlers' entry point (``download_request``
    through 2.13, ``download_request_async`` since 2.14); one may call the
    other, so *sending* may be called twice for a request."""
    handlers = getattr(getattr(engine, "downloader", None), "handlers", None)
    names = [
        name
        for name in ("download_request", "download_request_async")
        if callable(getattr(handlers, name, None))
    ]
    if not names:
        raise ConfigError(
            "this Scrapy version's downloader has no handlers.download_request; "
            "install a Scrapy version allowed by requirements.txt."
        )
    for name in names:
        setattr(handlers, name, _calling_first(sending, getattr(handlers, name)))


def before_download(engine: Any, wait: Callable[[Request], Awaitable[None]]) -> None:
    """Await *wait(request)* before each request's download handler is
    called: after any wait in the downloader's queue, its node's slot taken
    (``DownloadEvents.turn``: a download the frontier never handed out
    waits for its domain's turn in the cluster)."""
    handlers: Any = getattr(getattr(engine, "downloader", None), "handlers", None)
    call = getattr(handlers, "download_request_async", None)
    if not callable(call):
        raise ConfigError(
            "this Scrapy version's downloader has no handlers.download_request_async; "
            "install a Scrapy version allowed by requirements.txt."
        )

    async def waiting_first(request: Request, *args: Any, **kwargs: Any) -> Any:
        await wait(request)
        return await call(request, *args, **kwargs)

    handlers.download_request_async = waiting_first


def _calling_first(sending: Callable[[Request], None], call: Callable[..., Any]) -> Any:
    def wrapper(request: Request, *args: Any, **kwargs: Any) -> Any:
        sending(request)
        return call(request, *args, **kwargs)

    return wrapper


def in_progress(engine: Any) -> set[Request]:
    slot = getattr(engine, "_slot", None)
    return slot.inprogress if slot is not None else set()


def abandon_in_progress(engine: Any) -> bool:
    """Let a closing engine finish its close (spider_closed, feeds, the
    pipelines' close_spider, stats) without waiting for the requests it is
    processing, which were handed back: a download that ends later is
    forgotten (and does not fire the close a second time). False if the
    engine is not closing."""
    slot = getattr(engine, "_slot", None)
    if slot is None or slot.closing is None:
        return False
    abandoned = set(slot.inprogress)
    scraper = getattr(engine, "scraper", None)
    if scraper is not None:
        enqueue = scraper.enqueue_scrape

        def enqueue_scrape(result: Any, request: Request) -> Any:
            # Handed back: another node fetches and scrapes it. A response
            # arriving during the close was scraped into this node's feed
            # and items too (and raised AlreadyCalledError).
            if request in abandoned:
                return succeed(None)
            return enqueue(result, request)

        scraper.enqueue_scrape = enqueue_scrape
    slot.inprogress = set()
    slot.remove_request = lambda request: None
    slot._maybe_fire_closing()
    return True


def wake(engine: Any) -> None:
    slot = getattr(engine, "_slot", None)
    if slot is not None and slot.closing is None:
        slot.nextcall.schedule()


def stopping(engine: Any) -> bool:
    """True once the engine stops taking requests (SIGTERM, Ctrl-C, close)."""
    slot = getattr(engine, "_slot", None)
    return not getattr(engine, "running", False) or (slot is not None and slot.closing is not None)


class SpiderCallWatcher(Protocol):
    def failed(self, failure: Failure, request: Request) -> None:
        """*request*'s download ended in *failure* (before its errback)."""

    def errback_output(self, output: Any, request: Request) -> Any:
        """Called with each object an errback of *request* yields; returns it."""


def watch_spider_calls(engine: Any, watcher: SpiderCallWatcher) -> None:
    scraper: Any = getattr(engine, "scraper", None)
    original = getattr(scraper, "call_spider_async", None)
    if scraper is None or original is None:
        raise ConfigError(
            "this Scrapy version's scraper has no call_spider_async; install Scrapy 2.13 or later."
        )

    async def call_spider_async(result: Any, request: Request) -> Any:
        if not isinstance(result, Failure):
            return await original(result, request)
        watcher.failed(result, request)
        output = await original(result, request)
        return _each(output, lambda item: watcher.errback_output(item, request))

    scraper.call_spider_async = call_spider_async


def watch_close_spider(engine: Any, closing: Callable[[str], None]) -> None:
    """Call *closing* with the reason when a callback or errback raises
    CloseSpider: Scrapy's scraper hands it to ``handle_spider_error``, which
    closes this node's spider."""
    scraper: Any = getattr(engine, "scraper", None)
    original = getattr(scraper, "handle_spider_error", None)
    if original is None:
        raise ConfigError(
            "this Scrapy version's scraper has no handle_spider_error; "
            "install a Scrapy version allowed by requirements.txt."
        )

    def handle_spider_error(failure: Failure, *args: Any, **kwargs: Any) -> Any:
        if isinstance(failure.value, CloseSpider):
            closing(failure.value.reason or "cancelled")
        return original(failure, *args, **kwargs)

    scraper.handle_spider_error = handle_spider_error


def _each(output: Any, hook: Callable[[Any], Any]) -> Any:
    if hasattr(output, "__aiter__"):

        async def async_each() -> AsyncIterator[Any]:
            async for item in output:
                yield hook(item)

        return async_each()
    return (hook(item) for item in output)
