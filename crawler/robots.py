"""robots.txt fetched once per domain for the whole cluster, shared through Redis.

Replaces Scrapy's RobotsTxtMiddleware (same place, same ``ROBOTSTXT_*``
settings, same parser and signals). The first node that needs a domain's
robots.txt takes a short lock in Redis and fetches it; every other node
waits for the body it stores, instead of fetching its own copy. The body is
kept for ``CRAWLER_ROBOTSTXT_TTL`` seconds. A ``Crawl-delay`` for our user
agent becomes the domain's delay for the whole cluster when it is longer
than the configured one, up to ``CRAWLER_MAX_CRAWL_DELAY`` seconds.

Keys: ``{N}:robots:<scheme>://<netloc>`` STRING, ``"B" + body`` (fetched),
``"E"`` (fetching failed: everything is allowed, as in Scrapy) or ``"F"``
(a node is fetching it); ``{N}:dcrawl`` HASH domain -> Crawl-delay in ms,
the longest of those its sites' robots.txt asked for as last read
(``{N}:dcrawlsite``): read again, a robots.txt that asks for less lowers it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from protego import Protego
from scrapy import Request, signals
from scrapy.downloadermiddlewares.robotstxt import RobotsTxtMiddleware
from scrapy.exceptions import IgnoreRequest
from scrapy.http.request import NO_CALLBACK
from scrapy.robotstxt import RobotParser, decode_robotstxt
from scrapy.utils.defer import maybe_deferred_to_future
from scrapy.utils.httpobj import urlparse_cached
from scrapy.utils.misc import build_from_crawler
from twisted.internet.defer import Deferred

from crawler.config import CrawlConfig
from crawler.keys import Keys
from crawler.politeness import slot_of, with_send_margin
from crawler.scheduler import redis_scheduler
from crawler.scripts import script_source

logger = logging.getLogger(__name__)

# How long a node may take to fetch a robots.txt before another takes over.
_FETCH_LOCK = 30
_POLL = 0.1
# Seconds a failed robots.txt fetch ("everything allowed") is shared.
_FAILED_TTL = 300


class SharedRobotsTxtMiddleware(RobotsTxtMiddleware):
    def __init__(self, crawler: Any) -> None:
        super().__init__(crawler)
        self.config = CrawlConfig.from_settings(crawler.settings, crawler.spidercls.name)
        self._delay_script: tuple[Any, Any] | None = None
        #: When each site's parser was made (monotonic): a node that runs for
        #: good (recrawl) reads robots.txt again once it is older than
        #: CRAWLER_ROBOTSTXT_TTL, as the copy in Redis is.
        self._parsed_at: dict[str, float] = {}

    def _keys(self, request: Request) -> Keys:
        """The key names of the partition of *request*'s domain."""
        scheduler = redis_scheduler(self.crawler)
        config = scheduler.config if scheduler is not None else self.config
        return config.keys_for(slot_of(request))

    def _client(self) -> Any | None:
        scheduler = redis_scheduler(self.crawler)
        if scheduler is not None and scheduler.worker is not None:
            return scheduler.worker.frontier.client
        return None

    async def robot_parser(self, request: Request) -> RobotParser | None:
        url = urlparse_cached(request)
        netloc = url.netloc
        pending = self._parsers.get(netloc)
        if isinstance(pending, Deferred):
            # Not awaited as it is: Deferred.asFuture consumes the result, so
            # every waiter after the first got None ("allow everything").
            # Scrapy 2.19's own robot_parser has the same bug (super() path).
            return await _share(pending)
        client = self._client()
        if client is None:
            return await super().robot_parser(request)
        if pending is not None or netloc in self._parsers:
            ttl = (
                self.config.robots_ttl
                if pending is not None
                else min(self.config.robots_ttl, _FAILED_TTL)
            )
            if time.monotonic() - self._parsed_at.get(netloc, 0.0) > ttl:
                del self._parsers[netloc]  # read again: the site may have changed it
        if netloc not in self._parsers:
            self._parsers[netloc] = Deferred()
            site = f"{url.scheme}://{netloc}"
            try:
                body = await self._shared_body(client, site, request)
            except Exception as exc:
                # Allowing everything because Redis did not answer would
                # fetch pages the site forbids: fetch it here, as Scrapy does.
                logger.error(
                    "Could not get %s/robots.txt through Redis (%s); fetching it on this node.",
                    site,
                    exc,
                )
                body = await self._download(site)
            dfd = self._parsers[netloc]
            assert isinstance(dfd, Deferred)
            parsed = None
            if body is not None:
                parsed = build_from_crawler(self._parserimpl, self.crawler, body)
                await self.crawler.signals.send_catch_log_async(
                    signal=signals.robots_parsed, robotparser=parsed, request=request
                )
            self._parsers[netloc] = parsed
            self._parsed_at[netloc] = time.monotonic()
            dfd.callback(parsed)
        parser = self._parsers[netloc]
        assert not isinstance(parser, Deferred)
        return parser

    async def _shared_body(self, client: Any, site: str, request: Request) -> bytes | None:
        """The site's robots.txt body from Redis, fetching it if no node has."""
        key = self._keys(request).robots(site)
        deadline = time.monotonic() + _FETCH_LOCK * 2
        while True:
            if await client.set(key, b"F", nx=True, ex=_FETCH_LOCK):
                return await self._fetch(client, key, site, request)
            value = await client.get(key)
            if value is not None and value[:1] == b"B":
                self._stats.inc_value("robotstxt/shared")
                body = bytes(value[1:])
                # This domain (download slot) may not have its Crawl-delay yet.
                delay = self._crawl_delay(body, request)
                await self._keep_crawl_delay(client, request, site, delay)
                return body
            if value == b"E":
                return None
            if time.monotonic() > deadline:
                # The node fetching it is taking too long: fetch it here.
                return await self._fetch(client, key, site, request)
            await asyncio.sleep(_POLL)

    async def _download(self, site: str) -> bytes | None:
        """The body of *site*'s robots.txt, fetched by this node; None when
        it could not be fetched (everything is allowed then, as in Scrapy)."""
        robots = Request(
            f"{site}/robots.txt",
            priority=self.DOWNLOAD_PRIORITY,
            meta={"dont_obey_robotstxt": True},
            callback=NO_CALLBACK,
        )
        self._stats.inc_value("robotstxt/request_count")
        try:
            response = await self.crawler.engine.download_async(robots)
        except Exception as exc:
            if not isinstance(exc, IgnoreRequest):
                self._stats.inc_value(f"robotstxt/exception_count/{type(exc)}")
            logger.log(
                logging.WARNING if isinstance(exc, IgnoreRequest) else logging.ERROR,
                "Could not fetch %s (%s: %s); every page of %s is allowed, as in Scrapy.",
                robots.url,
                type(exc).__name__,
                exc,
                site,
            )
            return None
        self._stats.inc_value("robotstxt/response_count")
        self._stats.inc_value(f"robotstxt/response_status_count/{response.status}")
        return bytes(response.body)

    async def _fetch(self, client: Any, key: str, site: str, request: Request) -> bytes | None:
        body = await self._download(site)
        if body is None:
            # A failed fetch allows everything; in Redis only for a while,
            # so one network error does not lift the rules for a whole TTL.
            ttl = max(1, int(min(self.config.robots_ttl, _FAILED_TTL)))
            await client.set(key, b"E", ex=ttl)
            await self._keep_crawl_delay(client, request, site, None)
            return None
        ttl = max(1, int(self.config.robots_ttl))
        delay = self._crawl_delay(body, request)
        await client.set(key, b"B" + body, ex=ttl)
        # 0 too: the frontier holds a domain to one request at a time
        # until its robots.txt (and Crawl-delay) is known.
        await self._keep_crawl_delay(client, request, site, delay)
        if delay:
            logger.info(
                "%s/robots.txt asks for a Crawl-delay of %gs; the whole cluster keeps it.",
                site,
                delay,
            )
        # The robots.txt request counts as one to the domain, as in Scrapy:
        # the page waiting for it goes after the domain's delay.
        policy = self.config.policy
        slot = slot_of(request)
        wait = policy.delay_of(slot) * policy.factor(slot)
        if policy.autothrottle:
            wait = max(wait, policy.auto_start)
        wait = max(wait, delay)
        if wait > 0:
            await asyncio.sleep(with_send_margin(wait))
        return body

    async def _keep_crawl_delay(
        self, client: Any, request: Request, site: str, delay: float | None
    ) -> None:
        """Record *delay* (s; None: *site*'s robots.txt could not be
        fetched) as the Crawl-delay of *site*, replacing what it asked for
        before, smaller or not; the domain of *request* keeps the longest
        of its sites' (another scheme or port: crawler/lua/crawl_delay.lua)."""
        if self._delay_script is None or self._delay_script[0] is not client:
            self._delay_script = (client, client.register_script(script_source("crawl_delay")))
        keys = self._keys(request)
        ms = -1 if delay is None else int(delay * 1000)
        await self._delay_script[1](
            keys=[keys.crawl_delays, keys.site_crawl_delays], args=[slot_of(request), site, ms]
        )

    def _crawl_delay(self, body: bytes, request: Request) -> float:
        agent = self._robotstxt_useragent or request.headers.get(
            b"User-Agent", self._default_useragent
        )
        if isinstance(agent, bytes):
            agent = agent.decode("latin-1")
        try:
            rules = Protego.parse(decode_robotstxt(body, self.crawler.spider))
            delay = float(rules.crawl_delay(str(agent or "*")) or 0.0)
        except Exception:
            return 0.0
        if not delay > 0:  # NaN, negative
            return 0.0
        most = self.config.max_crawl_delay
        if most == 0:  # the crawl keeps no Crawl-delay: nothing to say
            return 0.0
        if delay > most:
            url = urlparse_cached(request)
            logger.warning(
                "%s://%s/robots.txt asks for a Crawl-delay of %gs; keeping %gs "
                "(CRAWLER_MAX_CRAWL_DELAY) so its pages do not hold the crawl that long. "
                "Raise the setting to keep more.",
                url.scheme,
                url.netloc,
                delay,
                most,
            )
            return most
        return delay


async def _share(pending: Deferred[RobotParser | None]) -> RobotParser | None:
    """*pending*'s result, awaited without taking it from later waiters."""
    waiter: Deferred[RobotParser | None] = Deferred()

    def relay(result: RobotParser | None) -> RobotParser | None:
        waiter.callback(result)
        return result

    pending.addCallback(relay)
    return await maybe_deferred_to_future(waiter)
