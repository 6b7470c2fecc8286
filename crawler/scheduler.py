"""The Scrapy scheduler backed by the shared Redis frontier.

Every method Scrapy calls works on memory only (see ``crawler.worker``):

* ``enqueue_request`` checks a local cache of fingerprints, encodes the
  request as JSON and queues it for the next atomic commit, which checks and
  sets the shared seen-set and pushes the request in one script.
* ``next_request`` hands out a request the worker already leased. The lease
  is acknowledged only once the engine is done with the request (callback
  finished, items through the pipelines) and the commit that acknowledges it
  also stores what it produced.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import os
import socket
import time
import uuid
from typing import Any, cast
from weakref import WeakKeyDictionary, WeakSet

from scrapy import Request, Spider, signals
from scrapy.core.scheduler import BaseScheduler
from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem
from scrapy.extensions.closespider import CloseSpider
from scrapy.http import Headers
from scrapy.settings import SETTINGS_PRIORITIES
from scrapy.utils.asyncio import is_asyncio_available
from scrapy.utils.defer import deferred_from_coro
from twisted.internet.defer import Deferred
from w3lib.url import canonicalize_url

from crawler import engine_hooks
from crawler.codec import (
    START_META,
    START_ORIGIN,
    closable_local_objects,
    encode_item,
    encode_request,
)
from crawler.config import CrawlConfig
from crawler.connection import (
    REACHED,
    async_client,
    check_reachable,
    redact,
    resolve_url,
    sync_client,
)
from crawler.decoding import EntryDecoder
from crawler.download_events import DownloadEvents, keyed_by_scrapy, redirect_slot
from crawler.exceptions import ConfigError, RedisUnavailable
from crawler.failures import FailureWatch
from crawler.fingerprints import redirected_start_fingerprint, start_fingerprint
from crawler.frontier import dead_letter, item_letter
from crawler.itemids import AFTER, STATE, ItemIds, made_by, origin_id
from crawler.jobs import expire_crawl, persist_if_expiring
from crawler.localseen import LocalSeen
from crawler.partfrontier import make_frontier
from crawler.politeness import request_entry, slot_of
from crawler.redis_errors import is_permission, is_transient
from crawler.scrapy_redis_settings import component_path
from crawler.seenrecord import check_seen_config
from crawler.topology import fit_to_redis, with_partitions
from crawler.worker import Worker, retry_for

logger = logging.getLogger(__name__)

#: Seconds a starting node waits for a Redis that went away after the
#: command's own check (crawler.commands.crawl).
_START_WAIT = 60.0

_SCRAPY_DUPEFILTER = "scrapy.dupefilters.RFPDupeFilter"

#: The close reason of a node whose Redis user lacks a permission.
PERMISSION_DENIED = "redis_permission_denied"


#: Meta key of a request going back to the frontier past the seen-set.
REQUEUE = "_crawler_requeue"
# Meta keys Scrapy's downloader middlewares set as they send a request, left
# out of its dead letter (RedirectMiddleware's redirect_ttl would end a
# requeued request's chain at its first redirect).
_SENT_META = frozenset(("retry_times", "redirect_ttl", "redirect_times", "download_latency"))


def _redirected_start(request: Request) -> bool:
    """Whether *request* is a redirect of a start request (RedirectMiddleware
    copies the start mark, crawler.codec.START_META, as plain Scrapy's copy
    keeps ``dont_filter``; a hop leased from Redis gets it back from its
    origin, crawler.decoding): keyed as a start request, so a later link to the
    page it leads to is fetched for its own callback. Not one that leads
    back into its own chain (a cookie wall bouncing to the start URL): its
    start key is seen already, so it is keyed as a link, as before. Nor a
    request an errback made with the failed start request's meta (no
    redirect chain)."""
    meta = request.meta
    chain = meta.get("redirect_urls")
    if not meta.get(START_META) or not chain:
        return False
    here = canonicalize_url(request.url)
    return all(canonicalize_url(url) != here for url in chain)


def _stop_reactor() -> None:
    from twisted.internet import reactor

    if reactor.running:
        reactor.stop()  # type: ignore[misc]


class RedisScheduler(BaseScheduler):
    """Shares one frontier, seen-set and item store between all nodes.

    Scrapy's side of a node: it implements Scrapy's scheduler interface and
    the worker's ``NodeEngine``; the Redis side is the worker's.
    """

    def __init__(self, crawler: Crawler, config: CrawlConfig, url: str) -> None:
        self.crawler = crawler
        self.config = config
        self.url = url
        self.node = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.spider: Spider | None = None
        self.worker: Worker | None = None
        self.events: DownloadEvents | None = None
        self.decoder: EntryDecoder | None = None
        self.active: dict[Request, str] = {}
        #: Leased requests as they were leased (crawler.recrawl).
        self.leased_as: dict[Request, tuple[Any, dict[str, Any], int, bool]] = {}
        #: Revisits of leased requests, committed with their ack (not before:
        #: a node killed between the two would store the page twice).
        #: (domain, seconds, the request, when noted: the interval counts
        #: from then); encoded at the ack, with its page's item count.
        self._revisits: dict[Request, list[tuple[str, float, Request, float]]] = {}
        #: A request on its last delivery, to run alone: (lease id, started).
        self._alone: tuple[str, bool] | None = None
        self.local_seen = LocalSeen(config.local_seen_cache)
        self.items = ItemIds(config.item_key, config.recrawl)
        self.failures = FailureWatch(self)
        #: The spider's start requests (crawler.middleware), keyed apart.
        self.start_requests: WeakSet[Request] = WeakSet()
        #: dont_filter requests a callback or errback made -> where in its
        #: output (``crawler.itemids.made_by``).
        self.made_by: WeakKeyDictionary[Request, bytes] = WeakKeyDictionary()
        self._closing = False
        #: Live objects (scrapy-playwright's open tab) left out of requests
        #: stored in Redis (a retried copy), to close once no request this
        #: node is processing holds them (``_close_left_behind``): by id.
        self._left_behind: dict[int, Any] = {}
        self._closing_tasks: set[asyncio.Future[Any]] = set()
        #: Telling the other nodes of a CloseSpider this node's spider
        #: raised: the whole crawl's run closes with it (crawler.closelimits).
        self._close_task: asyncio.Future[None] | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> RedisScheduler:
        if not is_asyncio_available():
            raise ConfigError(
                "the Redis scheduler needs the asyncio reactor: set TWISTED_REACTOR = "
                "'twisted.internet.asyncioreactor.AsyncioSelectorReactor'."
            )
        config = CrawlConfig.from_settings(crawler.settings, crawler.spidercls.name)
        url = resolve_url(crawler.settings)

        def checked() -> CrawlConfig:
            check_reachable(url)
            fitted = fit_to_redis(config, url, crawler.spidercls)
            with sync_client(url) as client:
                check_seen_config(client, fitted.keys, fitted.seen)
            return with_partitions(fitted, url, record=True)

        deadline, delay = time.monotonic() + _START_WAIT, 0.5
        while True:
            try:
                return cls(crawler, checked(), url)
            except Exception as exc:
                # A Redis never reached (runspider, a script: no `scrapy
                # crawl` check before) is a wrong URL, said at once: it
                # waited 60 s, deaf to Ctrl-C, saying Redis "went away".
                if not _outage(exc) or url not in REACHED or time.monotonic() + delay > deadline:
                    raise
                _waiting(url, exc, deadline)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    # -- Scrapy's scheduler interface --------------------------------------

    def open(self, spider: Spider) -> Deferred[None]:
        return deferred_from_coro(self._open(spider))

    async def _open(self, spider: Spider) -> None:
        self.spider = spider
        engine_hooks.check_engine(self.crawler.engine)
        engine_hooks.cluster_politeness(self.crawler.engine, self.active.__contains__)
        engine_hooks.watch_spider_calls(self.crawler.engine, self.failures)
        cfg = self.config
        client = async_client(self.url, cfg.lease_ms / 1000)
        frontier = make_frontier(client, cfg, self.node)
        decoder = self.decoder = EntryDecoder(
            spider, cfg, self.node, self.crawler.request_fingerprinter
        )
        stats = self.crawler.stats
        assert stats is not None
        self.worker = worker = Worker(
            frontier, cfg, self, decoder, stats, redact(self.url), self.local_seen
        )
        self.events = events = DownloadEvents(cfg.policy, worker, self.active.get)
        engine_hooks.on_send(self.crawler.engine, events.sending)
        engine_hooks.before_download(self.crawler.engine, events.turn)
        engine_hooks.watch_close_spider(self.crawler.engine, self._spider_closes)
        self.crawler.signals.connect(events.response_downloaded, signals.response_downloaded)

        async def join() -> None:
            await asyncio.to_thread(self._keep)
            await self._check_seed_key(client)
            await frontier.register()
            await frontier.heartbeat(cfg.lease_ms, worker.report.describe("running"))
            await worker.limits.start()

        await retry_for(
            _START_WAIT, join, _outage, lambda exc, deadline: _waiting(self.url, exc, deadline)
        )
        worker.start()
        logger.info("Node %s joined crawl %r on Redis %s", self.node, cfg.name, redact(self.url))
        _unused_dupefilter(self.crawler.settings)
        _unused_queues(self.crawler.settings)

    async def _check_seed_key(self, client: Any) -> None:
        """Seeds pushed the scrapy-redis way are read from a list, a set or
        a sorted set: a key of another type was passed over in silence
        (helper 38: `redis-cli set`, exit 0, nothing fetched), where
        scrapy-redis raises WRONGTYPE. Said, naming the key."""
        key = self.config.keys.start_urls
        kind = await client.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        if kind not in ("none", "list", "set", "zset"):
            logger.warning(
                "%s is a %s: seeds are read from a list (LPUSH), a set (SADD) or a sorted "
                "set (ZADD), so its value is not read. Push the seeds into a key of one of "
                "those types, or use `scrapy seed`.",
                key,
                kind,
            )

    def _keep(self) -> None:
        """A crawl set to expire (CRAWLER_CRAWL_TTL) that a node joins is kept."""
        client = sync_client(self.url)
        try:
            persist_if_expiring(client, self.config.partitions())
        finally:
            client.close()

    def close(self, reason: str) -> Deferred[None]:
        return deferred_from_coro(self._close(reason))

    def _spider_closes(self, reason: str) -> None:
        """The spider raised CloseSpider(*reason*): tell the other nodes now,
        not once this one has finished what it has in progress."""
        if self._close_task is not None or self.worker is None:
            return
        logger.info(
            "The spider raised CloseSpider(%r): closing crawl %r on every node.",
            reason,
            self.config.name,
        )
        self._close_task = asyncio.ensure_future(self._publish_close(self.worker, reason))

    async def _publish_close(self, worker: Worker, reason: str) -> None:
        try:
            await worker.frontier.close_run(reason)
        except Exception as exc:  # this node closes all the same; say so
            name = self.config.name
            logger.error("Could not close crawl %r on the other nodes: %s", name, exc)

    async def _close(self, reason: str) -> None:
        worker = self.worker
        if worker is None:
            return
        if self._close_task is not None:
            await self._close_task
        await worker.stop()
        self._reap()
        await worker.close()
        logger.info("Node %s left crawl %r (%s)", self.node, self.config.name, reason)
        if self.config.crawl_ttl and worker.completion.finished:
            await asyncio.to_thread(self._expire)

    def _expire(self) -> None:
        """The whole crawl is finished: its keys live CRAWLER_CRAWL_TTL more."""
        ttl = self.config.crawl_ttl
        client = sync_client(self.url)
        try:
            found = expire_crawl(client, self.config.partitions(), ttl, self.node)
            if found is None:
                logger.info(
                    "Crawl %r not set to expire by this node: another is still in it "
                    "(the last to leave sets it).",
                    self.config.name,
                )
            else:
                logger.info(
                    "Crawl %r expires in %gs (CRAWLER_CRAWL_TTL): %d keys.",
                    self.config.name,
                    ttl,
                    found,
                )
        except Exception as exc:  # the crawl stays; say so
            logger.error("Could not set crawl %r to expire: %s", self.config.name, exc)
        finally:
            client.close()

    def has_pending_requests(self) -> bool:
        """Work anywhere in the crawl counts: Scrapy's engine sends
        ``spider_idle`` (and may close) only once the whole crawl is
        finished, as one Scrapy process would. Before, a node out of work
        of its own sent it, and a spider's handler scheduling a second
        phase from there started it early."""
        worker = self.worker
        return bool(worker and (worker.leases.ready or not self.cluster_finished))

    def enqueue_request(self, request: Request) -> bool:
        worker = self.worker
        assert worker is not None and self.spider is not None
        fp: bytes | None = None
        # What its items' ids derive from, if not its fingerprint: a start
        # request's seen-set key, a dont_filter request's content (each is
        # another request, as in plain Scrapy; crawler.codec.decode_entry).
        origin: bytes | None = None
        by_content = False
        redirect_slot(request)
        requeue = request.meta.pop(REQUEUE, False)
        if requeue:
            # Seen already: back to the frontier as it is (crawler.backoff),
            # with the origin it was leased with.
            origin = bytes.fromhex(requeue) if isinstance(requeue, str) else None
            origin = self._stored_origin(request, origin)
        elif not request.dont_filter:
            fp = self.crawler.request_fingerprinter.fingerprint(request)
            if request in self.start_requests:
                fp, origin = start_fingerprint(fp), START_ORIGIN
            elif _redirected_start(request):
                # Keyed by the start URL it came from too: a start URL that
                # redirects to another start URL (/docs -> /docs/) is fetched
                # again, with items of its own, as plain Scrapy's dont_filter
                # redirect is; its items' ids derive from this key.
                fp = origin = redirected_start_fingerprint(
                    canonicalize_url(request.meta["redirect_urls"][0]), fp
                )
            if fp in self.local_seen:
                worker.count("crawler/duplicates_local")
                worker.count("dupefilter/filtered")  # as Scrapy's RFPDupeFilter
                return False
        else:
            by_content = True
        try:
            where = self.made_by.pop(request, b"") if by_content else b""
            entry = request_entry(request, self.spider, origin, by_content, where)
        except Exception as exc:  # never out of the engine's hands
            # Not dropped in silence: dead-lettered with the key path and
            # type, and `scrapy requeue` retries it once the spider is fixed.
            # Its fingerprint stays unseen, so a storable copy is queued.
            worker.count("crawler/unstorable_requests")
            why = str(exc) if isinstance(exc, ValueError | TypeError) else repr(exc)
            self.dead_letter(request, f"cannot store {request}: {why}")
            self._leave_behind(request)
            return False
        self._leave_behind(request)
        if fp is not None:
            # Seen locally once its commit succeeded (crawler.localseen).
            self.local_seen.add_pending(fp)
        if worker.completion.finished:
            # Scheduled once the crawl was finished (a spider_idle handler):
            # not finished until Redis says whether it queued anything.
            worker.completion.unsettled = True
        worker.batch.pushes.append((fp, request.priority, entry))
        if len(worker.batch) >= self.config.batch_size:
            worker.wakeup.set()
        return True

    def next_request(self) -> Request | None:
        worker = self.worker
        if worker is None:
            return None
        self._reap()
        starts = worker.commits.starts
        if not self._alone_allows(worker) or not starts.may_hand_out():
            worker.wakeup.set()  # the next commit reports what started
            return None
        taken = worker.leases.take(starts.fits, self._would_wait)
        if taken is None:
            worker.wakeup.set()
            return None
        lease_id, request = taken
        self.active[request] = lease_id
        # As Scrapy's scheduler and scrapy-redis's count a request handed out.
        worker.count("scheduler/dequeued")
        worker.count("scheduler/dequeued/redis")
        if self.config.recrawl or request.meta.get(STATE) or request.meta.get(AFTER):
            # As leased, before the downloader middlewares add to it: what a
            # revisit stores (crawler.recrawl).
            self.leased_as[request] = (
                request.headers.copy(),
                dict(request.meta),
                request.priority,
                request.dont_filter,
            )
        starts.handed_out(lease_id)
        if self._alone is not None and self._alone[0] == lease_id:
            self._alone = (lease_id, True)
            starts.isolate(0)  # nothing else starts until it is acknowledged
            logger.info(
                "Running %s alone: its last delivery before the dead letters "
                "(CRAWLER_MAX_DELIVERIES=%d).",
                request,
                self.config.max_deliveries,
            )
        return request

    def _would_wait(self, request: Request) -> bool:
        return engine_hooks.would_wait(self.crawler.engine, request)

    def _alone_allows(self, worker: Worker) -> bool:
        """Whether the next request may go, as far as a request on its last
        delivery goes: it runs alone, once what went before is finished and
        acknowledged, and nothing follows it until it is acknowledged too;
        so if its node dies then, only it is counted (crawler.starts)."""
        starts = worker.commits.starts
        if self._alone is not None and self._alone[1]:
            if self._alone[0] in self.active.values():
                return False  # the engine asks again once it is done
            if not worker.commits.settled():
                starts.refused = True  # woken once it is acknowledged
                return False
            self._alone = None
            starts.isolate(None)
        alone = worker.leases.alone_next()
        if alone is None:
            if self._alone is not None:  # taken back meanwhile
                self._alone = None
                starts.isolate(None)
            return True
        self._alone = (alone, False)
        if self.active:
            # Nothing more may start meanwhile; the engine asks again as
            # each finishes.
            starts.isolate(0)
            return False
        # A window of 1 once nothing else is unacknowledged: Redis then
        # counts this request alone if the node dies.
        starts.isolate(1, alone)
        if not worker.commits.settled():
            starts.refused = True  # woken once the window of 1 is in Redis
            return False
        return True

    # -- the worker's NodeEngine -------------------------------------------

    def wake(self) -> None:
        engine_hooks.wake(self.crawler.engine)

    def locally_idle(self) -> bool:
        # Reaped here too, not only when the engine asks for a request: a
        # closing engine (SIGTERM, a limit) or a full downloader asks for
        # none, and requests it had finished counted as in progress (the
        # graceful stop timed Scrapy's own close and cut its pipelines short).
        self._reap()
        return not self.active

    def stopping(self) -> bool:
        return engine_hooks.stopping(self.crawler.engine)

    def active_ids(self) -> set[str]:
        self._reap()
        return set(self.active.values())

    async def stop_timed_out(self) -> None:
        """The graceful stop took too long: hand everything back and exit."""
        worker = self.worker
        assert worker is not None
        self._reap()
        logger.warning(
            "Still processing %d requests after CRAWLER_STOP_TIMEOUT=%ss; handing "
            "them back to the frontier and stopping now.",
            len(self.active),
            self.config.stop_timeout,
        )
        self.active.clear()
        self._revisits.clear()
        try:
            await worker.hand_back()
        except Exception as exc:  # stop all the same: the leases expire
            logger.error(
                "Could not hand back this node's requests (%s); they return "
                "to the frontier when its leases expire.",
                exc,
            )
            _stop_reactor()
            return
        # Close as Scrapy does (spider_closed: feeds, pipelines, stats, this
        # node leaving the crawl), without the requests handed back. (Scrapy's
        # own close is not timed: a second Ctrl-C forces it, as in Scrapy.)
        if not engine_hooks.abandon_in_progress(self.crawler.engine):
            _stop_reactor()

    def page_count_reached(self) -> None:
        self.limit_reached(
            "closespider_pagecount", "it handed out its CLOSESPIDER_PAGECOUNT requests"
        )

    def limit_reached(self, reason: str, why: str) -> None:
        if self._closing:
            return
        self._closing = True
        logger.info("Crawl %r closing: %s.", self.config.name, why)
        engine = self.crawler.engine
        assert engine is not None
        deferred_from_coro(engine.close_spider_async(reason=reason))

    def winding_up(self) -> None:
        """Waiting out CRAWLER_FINISH_GRACE, this node is done, not short of
        items: one Scrapy process out of work closes ``finished`` at once.
        Scrapy's CLOSESPIDER_TIMEOUT_NO_ITEM counted the grace as a period
        without items, so a crawl with a timeout no longer than the grace
        always ended ``closespider_timeout_no_item`` (exit status 0 over
        dead letters; helper 49). The grace counts as a period with an item."""
        for extension in self.crawler.extensions.middlewares:
            if isinstance(extension, CloseSpider) and hasattr(extension, "items_in_period"):
                extension.items_in_period = max(extension.items_in_period, 1)

    def refused(self, message: str) -> None:
        logger.error("%s", message)
        engine = self.crawler.engine
        assert engine is not None
        deferred_from_coro(engine.close_spider_async(reason=PERMISSION_DENIED))

    # -- used by the pipeline, middlewares and extension -------------------

    @property
    def cluster_finished(self) -> bool:
        completion = self.worker.completion if self.worker else None
        return (
            bool(completion and completion.finished and not completion.unsettled)
            and not self.active
        )

    def origin_of(self, request: Request) -> bytes | None:
        """The item origin stored with the leased *request*'s entry, if any."""
        return self.decoder.origins.get(request) if self.decoder is not None else None

    def item_basis(self, request: Request) -> bytes:
        """What the ids of *request*'s items derive from: its stored origin,
        or its fingerprint."""
        origin = self.origin_of(request)
        if origin is not None:
            return origin
        return bytes(self.crawler.request_fingerprinter.fingerprint(request))

    def note_origin(
        self, item: Any, item_id: bytes, request: Request, position: int | None = None
    ) -> None:
        self.items.note_origin(item, item_id, request, position)

    def _stored_origin(self, request: Request, origin: bytes | None) -> bytes | None:
        """*origin* as an entry stores it: START_ORIGIN for a start
        request's, so the node that leases it again marks it a start request
        (its redirects too)."""
        if origin is not None and len(origin) == 20:  # a seen-set key, not a content hash
            if origin == start_fingerprint(self.crawler.request_fingerprinter.fingerprint(request)):
                return START_ORIGIN
        return origin

    def note_made_by(
        self, request: Request, parent: Request, counts: dict[bytes, int], salt: bytes = b""
    ) -> None:
        """*request* (``dont_filter``) is one more of those identical to it
        the callback (errback: *salt*) of *parent* made, counted in *counts*
        (that output's, by ``made_key``): its items' ids derive from its
        position there too, so identical ones are each another request."""
        key = self.made_key(request)
        position = counts[key] = counts.get(key, -1) + 1
        self.made_by[request] = made_by(self.item_basis(parent), position, salt)

    def made_key(self, request: Request) -> bytes:
        """What *request* (``dont_filter``) is counted among for
        ``note_made_by``: the requests of its callback's output identical to
        it, alike in all its entry stores (its fingerprint if it cannot be
        stored). Not its fingerprint alone: requests to one URL that differ
        by meta or cb_kwargs (one made for each value of a set) come in
        another order in each process, and so would their positions."""
        assert self.spider is not None
        try:
            text = encode_request(request, self.spider)
        except Exception:  # refused when it is stored: no items to tell apart
            return bytes(self.crawler.request_fingerprinter.fingerprint(request))
        return hashlib.sha1(text.encode("utf-8", "surrogatepass")).digest()

    def note_start_item(self, item: Any, position: int) -> None:
        assert self.spider is not None
        self.items.note_start_item(item, position, self.spider.name)

    def forget_origin(self, item: Any) -> None:
        self.items.forget(item)

    def store_item(self, item: Any) -> None:
        """Queue *item* for the commit that acks its request. One that cannot
        be encoded (bytes, nesting deeper than JSON allows, not an item) is
        set aside in the dead letters with its reason and dropped."""
        worker = self.worker
        assert worker is not None
        item_id, mode, origin = self.items.identify(item)
        if mode == "!":
            # Replaces only while this node holds the lease it was fetched
            # with (commit.lua): a later lease's version of the page is newer.
            mode = f"!{self.active.get(origin, '') if origin is not None else ''}|"
        try:
            data = encode_item(item)
        except Exception as exc:
            reason = f"cannot store item: {type(exc).__name__}: {exc}"
            worker.count("crawler/unstorable_items")
            worker.batch.deads.append(("", item_letter(reason, repr(item)[:2000], self.node)))
            raise DropItem(reason) from None
        worker.batch.items.append((item_id, mode + data))  # commit.lua reads the mode

    def revisit(self, request: Request, seconds: float, leased: Request) -> None:
        """Store *request* (made from *leased*) with the commit that acks its
        page, due again in *seconds* (crawler.recrawl)."""
        worker = self.worker
        assert worker is not None
        if leased not in self.active:  # acked already: nothing to wait for
            value = self._revisit_value(request, leased)
            if value is not None:
                worker.batch.revisits.append((slot_of(request), seconds, value, ""))
            return
        noted = (slot_of(request), seconds, request, time.monotonic())
        self._revisits.setdefault(leased, []).append(noted)

    def _revisit_value(self, request: Request, leased: Request) -> str | None:
        """The "<priority>|<entry>" of a revisit, None if it cannot be stored."""
        assert self.worker is not None and self.spider is not None
        try:
            # Its items keep their ids from one visit to the next.
            entry = request_entry(
                request, self.spider, self._stored_origin(leased, self.origin_of(leased))
            )
        except Exception as exc:  # the page is acked all the same
            self.worker.count("recrawl/unstorable")
            logger.warning("Cannot store %s to fetch it again: %s", request, exc)
            return None
        return f"{request.priority}|{entry}"

    def _settle_items(self, request: Request, lease_id: str) -> None:
        """*request*'s page is done: its revisits record how many callback
        positions its items take, and the items of a changed page it no
        longer yields are removed with the ack (while the lease is held)."""
        worker = self.worker
        assert worker is not None
        count, stale = self.items.settle(request)
        if count is not None:
            for _, _, again, _ in self._revisits.get(request, ()):
                state = again.meta.get(STATE)
                if isinstance(state, dict):
                    again.meta[STATE] = {**state, "n": count}
        if stale:
            basis = self.item_basis(request)
            for position in stale:
                worker.batch.items.append((origin_id(basis, position), f"-{lease_id}|"))

    def dead_letter(self, request: Request, reason: str) -> None:
        """Record that the cluster gave up on *request* (or could not store
        it); a leased one is acked as usual. The letter holds the request as
        far as it can be stored: a value that cannot be is a placeholder
        that `scrapy requeue` reports instead of queuing."""
        worker = self.worker
        assert worker is not None and self.spider is not None
        try:
            retry = self._as_made(request)
        except Exception:  # never lose the letter over what it leaves out
            retry = request
        try:
            # With its item origin: `scrapy requeue` keeps its items' ids.
            origin = self._stored_origin(request, self.origin_of(request))
            entry = encode_request(retry, self.spider, lenient=True, origin=origin)
        except Exception:  # a request too broken even for a placeholder
            entry = ""
        self.failures.lettered.add(request)
        logger.warning("Dead-lettering %s: %s", request, reason)
        worker.count("crawler/dead_lettered")
        letter = dead_letter(reason, entry, self.node, request.url, self._revisited_page(request))
        worker.batch.deads.append(("", letter))

    def _revisited_page(self, request: Request) -> str | None:
        """*request*'s fingerprint (hex) if it is a recrawl's revisit of its
        page (its own recrawl state, not one copied with another's meta):
        its dead letter replaces the one its page's last failing revisit
        left (commit.lua), as the page stays on the schedule."""
        state = request.meta.get(STATE)
        if not isinstance(state, dict):
            return None
        fp = bytes(self.crawler.request_fingerprinter.fingerprint(request))
        return fp.hex() if state.get("f") == fp[:4].hex() else None

    def _as_made(self, request: Request) -> Request:
        """*request* without what Scrapy's downloader and its middlewares
        gave it from the settings as they sent it: a dead letter is queued
        again (`scrapy requeue`) once the cause is fixed, often by a setting
        (a longer DOWNLOAD_TIMEOUT, more REDIRECT_MAX_TIMES, another
        USER_AGENT), which a value kept with it would outrank: the retry
        count, the redirect counters (a fresh chain), the download_slot
        Scrapy wrote, the latency, the download_timeout and the default
        headers the settings gave it. Values a spider set otherwise stay."""
        settings, spider = self.crawler.settings, self.spider
        meta = {k: v for k, v in request.meta.items() if k not in _SENT_META}
        timeout = getattr(spider, "download_timeout", settings.getfloat("DOWNLOAD_TIMEOUT"))
        if meta.get("download_timeout") == timeout:
            del meta["download_timeout"]
        if keyed_by_scrapy(request):
            del meta["download_slot"]
        headers = request.headers.copy()
        defaults = dict(settings.getdict("DEFAULT_REQUEST_HEADERS"))
        agent = getattr(spider, "user_agent", None) or settings.get("USER_AGENT")
        if agent:
            defaults["User-Agent"] = agent
        for name, value in defaults.items():
            # As Scrapy stores a header (DEFAULT_REQUEST_HEADERS may hold an
            # int: {"DNT": 1} is sent as b"1").
            if headers.getlist(name) == Headers({name: value}).getlist(name):
                del headers[name]
        return request.replace(meta=meta, headers=headers)

    def backoff(self, request: Request, seconds: float) -> None:
        """Pause *request*'s domain cluster-wide (seconds < 0: exponential)."""
        assert self.events is not None
        self.events.backoff(request, seconds)

    def paused(self, request: Request) -> bool:
        """True while *request*'s domain is paused after a 429/503 (as this node knows)."""
        return self.events is not None and self.events.paused(request)

    def recovered(self, request: Request) -> None:
        """*request*'s domain answered it fine (crawler.backoff)."""
        if self.events is not None:
            self.events.recovered(request)

    def _reap(self) -> None:
        """Acknowledge requests the engine has finished with."""
        if self.active:
            self._ack_finished()
        if self._left_behind:
            self._close_left_behind()

    def _ack_finished(self) -> None:
        busy = engine_hooks.in_progress(self.crawler.engine)
        worker = self.worker
        assert worker is not None
        finished = [r for r in self.active if r not in busy]
        for request in finished:
            self._settle_items(request, self.active[request])
            lease_id = self.active.pop(request)
            self.leased_as.pop(request, None)
            for domain, seconds, again, noted in self._revisits.pop(request, ()):
                value = self._revisit_value(again, request)
                if value is None:
                    continue
                left = max(0.0, seconds - (time.monotonic() - noted))
                # Stored only if this node still holds the lease: one that
                # expired (a node paused or cut off from Redis) was handed
                # to another node, whose fetch stores the page's revisit.
                worker.batch.revisits.append((domain, left, value, lease_id))
            worker.batch.acks.append(lease_id)
            unsent = worker.leases.started(lease_id)
            if unsent is not None:
                # Finished without going out (robots.txt, a cache hit, a
                # filter): its domain need not wait.
                worker.batch.unblocks.append(unsent)
            self.items.done(request)
            self.failures.done(request)
        if finished:
            worker.wakeup.set()

    def _leave_behind(self, request: Request) -> None:
        """*request* leaves this node (stored in Redis, or dead-lettered)
        without its live objects (crawler.codec._LOCAL_META). In plain Scrapy
        a retried or redirected copy carries scrapy-playwright's open tab
        (``playwright_include_page``) and reuses it, and the callback closes
        it; here the copy's node opens its own, and this one stayed open for
        good: a leak, and with PLAYWRIGHT_MAX_PAGES_PER_CONTEXT a wedged
        node once the leaked tabs held every slot."""
        for value in closable_local_objects(request):
            self._left_behind[id(value)] = value

    def _close_left_behind(self) -> None:
        """Close the objects left behind that no request this node is
        processing holds any more (the request a retry was made from holds
        its tab until its engine is done with it)."""
        held = {id(value) for request in self.active for value in closable_local_objects(request)}
        for key in [key for key in self._left_behind if key not in held]:
            value = self._left_behind.pop(key)
            try:
                result = value.close()
            except Exception as exc:
                logger.debug("Could not close %r left out of a stored request: %s", value, exc)
                continue
            if self.worker is not None:
                self.worker.count("crawler/local_objects_closed")
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._closing_tasks.add(task)
                task.add_done_callback(self._closed_left_behind)

    def _closed_left_behind(self, task: asyncio.Future[Any]) -> None:
        self._closing_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.debug(
                "Could not close an object left out of a stored request: %s", task.exception()
            )


def _outage(exc: BaseException) -> bool:
    """Whether *exc* says Redis went away (not a setup error)."""
    if isinstance(exc, RedisUnavailable):
        return True  # reachable a moment ago, at the command's own check
    return is_transient(exc) and not is_permission(exc)


_said_waiting: set[str] = set()


def _waiting(url: str, exc: BaseException, deadline: float) -> None:
    """Say once that a starting node waits for Redis (a running one rides
    out an outage in its worker; a starting one exited 1 in silence)."""
    if url in _said_waiting:
        return
    _said_waiting.add(url)
    logger.warning(
        "Redis at %s went away while this node was starting (%s); waiting for it, "
        "up to %.0f s more.",
        redact(url),
        str(exc).split(". Check", 1)[0],
        max(0.0, deadline - time.monotonic()),
    )


def _unused_dupefilter(settings: Any) -> None:
    """A project's own DUPEFILTER_CLASS is not used (the seen-set dedupes
    for the whole crawl): said, so a custom rule is not dropped in silence."""
    if (settings.getpriority("DUPEFILTER_CLASS") or 0) <= SETTINGS_PRIORITIES["default"]:
        return
    path = component_path(settings.get("DUPEFILTER_CLASS"))
    if path in (_SCRAPY_DUPEFILTER, "") or path.startswith("scrapy_redis."):
        return  # the default, or scrapy-redis's own (its settings report says so)
    # A subclass of scrapy-redis's with a rule of its own is warned about
    # too: the settings report's "not used" did not say where the rule goes.
    logger.warning(
        "DUPEFILTER_CLASS = %s is not used: the frontier's seen-set dedupes requests "
        "for the whole crawl by their fingerprint (REQUEST_FINGERPRINTER_CLASS, which "
        "is honoured). Put a custom duplicate rule in a request fingerprinter.",
        path,
    )


#: Scrapy's settings for its own queues, which the frontier replaces.
_QUEUE_SETTINGS = ("SCHEDULER_MEMORY_QUEUE", "SCHEDULER_DISK_QUEUE", "SCHEDULER_PRIORITY_QUEUE")


def _unused_queues(settings: Any) -> None:
    """Scrapy's queue settings (its recipe for a breadth-first crawl) are
    not used: said, with what orders the frontier (they were ignored in
    silence, and Scrapy's depth-first default order became another)."""
    named = [
        f"{name} = {component_path(settings.get(name))}"
        for name in _QUEUE_SETTINGS
        if (settings.getpriority(name) or 0) > SETTINGS_PRIORITIES["default"]
    ]
    if named:
        logger.warning(
            "%s not used: the frontier in Redis hands requests out by priority, first in "
            "first out within one (Scrapy's own default is last in first out: depth-first). "
            "Order a crawl with Request.priority; DEPTH_PRIORITY = 1 gives breadth-first.",
            " and ".join(named) + (" is" if len(named) == 1 else " are"),
        )


def redis_scheduler(crawler: Crawler) -> RedisScheduler | None:
    """The crawl's RedisScheduler, or None (no engine yet, or another scheduler)."""
    engine = crawler.engine
    scheduler = engine.scheduler if engine is not None else None
    # Not isinstance(): Scrapy's BaseSchedulerMeta makes it true for any
    # scheduler (its methods are looked for, not its class).
    if RedisScheduler in type(scheduler).__mro__:
        return cast(RedisScheduler, scheduler)
    return None
