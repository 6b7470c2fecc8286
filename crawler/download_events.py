"""What a node's downloader tells the cluster, for politeness and deliveries.

* A leased request goes out (its download handler is called, after any
  wait in the downloader's queue): for a domain with a delay, its start is
  reported, which times the domain's next request for the whole cluster.
  So does a download the frontier never handed out, given its domain's
  turn (``turn``).
* A response's latency, for the cluster's shared AutoThrottle.
* A 429/503: the domain is paused for every node (``crawler.backoff``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from scrapy import Request, Spider
from scrapy.exceptions import IgnoreRequest
from scrapy.resolver import dnscache
from scrapy.utils.httpobj import urlparse_cached

from crawler.politeness import Policy, domain_name, slot_of
from crawler.worker import Worker

logger = logging.getLogger(__name__)

# Seconds between two asks while a leased request's hold is on the domain.
_HOLD_POLL = 0.1


class DownloadEvents:
    def __init__(
        self, policy: Policy, worker: Worker, lease_of: Callable[[Request], str | None]
    ) -> None:
        self.policy = policy
        self.worker = worker
        self.lease_of = lease_of
        self._reserve_failed = False

    def sending(self, request: Request) -> None:
        lease_id = self.lease_of(request)
        if lease_id is None:
            return
        worker = self.worker
        domain = worker.leases.slots.get(lease_id)
        if domain is not None and _keyed_by_ip(request) and slot_of(request) != domain:
            # Scrapy's downloader keyed it by IP (CONCURRENT_REQUESTS_PER_IP)
            # and is done with the key. Kept, its 429s would pause the IP, not
            # the domain, and its retries and redirects would queue under the
            # IP, a second domain for the same site.
            del request.meta["download_slot"]
        started = worker.leases.started(lease_id)
        if started is not None:
            slot, hold = started
            self._report_start(slot, self.policy.factor(slot), hold)

    def _report_start(self, slot: str, factor: float, hold: int) -> None:
        """Report that a request of *slot* goes out now (its download
        handler is being called), which times the domain's next request for
        the cluster; *hold*: the end of the hold its lease or turn put on
        the domain (Redis ms, 0 if none or not known)."""
        worker = self.worker

        def report() -> None:
            worker.batch.starts.append((slot, factor, time.monotonic(), hold))
            worker.wakeup.set()

        # Timed at the event loop's next turn, when the handler's write
        # goes out, not now: what runs before it (the rest of this turn,
        # a garbage collection: 74-83 ms measured) would otherwise pass
        # for time the request spent on its way, and the domain's next
        # request, timed from this start, reached the site that much
        # under the delay after it (0.47 s under 0.5 s).
        _when_sent(report)

    def response_downloaded(self, response: Any, request: Request, spider: Spider) -> None:
        latency = request.meta.get("download_latency")
        if (
            not self.policy.autothrottle
            or latency is None
            or request.meta.get("autothrottle_dont_adjust_delay") is True
        ):
            return
        self.worker.batch.latencies.append(
            (slot_of(request), int(latency * 1000), response.status == 200)
        )

    async def turn(self, request: Request) -> None:
        """Wait until *request*, a download the frontier never handed out
        (FilesPipeline, ImagesPipeline, a callback's ``engine.download()``),
        may go to its domain, by the domain's delay, Crawl-delay and pause
        for the whole cluster (crawler/lua/reserve.lua): with a node's own
        slot only, each node sent its files one delay apart, so a fleet of N
        sent N times as many. Its node's slot still applies (concurrency)."""
        if not self._may_wait(request):
            return
        host = urlparse_cached(request).hostname
        # Keyed by its IP (CONCURRENT_REQUESTS_PER_IP), it counts to its host.
        slot = domain_name(host) if _keyed_by_ip(request) else slot_of(request)
        if not self.policy.may_delay and not self.worker.pauses.paused(slot):
            return
        leases = self.worker.leases
        while True:
            own = leases.own_holds(slot)
            factor = self.policy.factor(slot)
            asked = time.monotonic()
            try:
                turn = await self.worker.frontier.reserve(
                    slot, factor, leases.lease_ms, own.values()
                )
            except Exception as exc:
                if not self._reserve_failed:
                    logger.warning(
                        "Could not ask Redis for %s's turn (%s): downloads the frontier did not "
                        "hand out keep this node's own delay until it answers.",
                        slot,
                        exc,
                    )
                self._reserve_failed = True
                return
            self._reserve_failed = False
            if turn.own_gap is not None:
                # The hold is this node's own leased request, which may wait
                # behind this download for room in the downloader: this goes
                # first (when that one would have: it may be leased ahead)
                # and that one a delay after it. Unless it went out while
                # Redis answered: its start, reported soon, times this one.
                if any(lid not in leases.holding for lid in own):
                    await self._sleep(_HOLD_POLL)
                    continue
                first = leases.due_in(own)
                if first > 0:
                    await self._sleep(first)
                    continue
                leases.hold_back(own, turn.own_gap)
                # And again from when this download goes out, as a start
                # report is timed: its node may reach the handler late.
                _when_sent(partial(self._hold_back, list(own), turn.own_gap))
                return
            if turn.hold:
                # The domain is held for this download until its start is
                # reported, as for a leased page's lease: the next request
                # is timed from when this one goes (the handler is called
                # as this returns), not from Redis's grant, which came up
                # to 0.27 s before under load (the answer's way back, a
                # busy event loop): the next file went 0.288 s after it.
                if time.monotonic() - asked > leases.send_within:
                    # The answer came too late for the report to reach Redis
                    # within the hold (a frozen node): ask again, once the
                    # hold has run out.
                    continue
                self._report_start(slot, factor, turn.hold)
                return
            if turn.wait <= 0:
                return
            # A hold ends when its request starts, usually within a commit.
            await self._sleep(min(turn.wait, _HOLD_POLL) if turn.held else turn.wait)

    def _hold_back(self, lease_ids: list[str], seconds: float) -> None:
        """Send none of *lease_ids* still held and not handed out for
        *seconds* from now."""
        leases = self.worker.leases
        leases.hold_back([lid for lid in lease_ids if lid in leases.holding], seconds)

    async def _sleep(self, seconds: float) -> None:
        """Wait *seconds*, or until the node handed its requests back (a stop
        that timed out): the download then fails (IgnoreRequest) instead of
        keeping the node's close waiting out a domain's pause."""
        stopped = self.worker.handed_back
        if stopped.is_set():
            raise IgnoreRequest("this node stopped and handed its requests back")
        try:
            await asyncio.wait_for(stopped.wait(), seconds)
        except TimeoutError:
            return
        raise IgnoreRequest("this node stopped and handed its requests back")

    def _may_wait(self, request: Request) -> bool:
        if self.lease_of(request) is not None:
            return False
        url = urlparse_cached(request)
        if url.scheme not in ("http", "https") or not url.hostname:
            return False
        # robots.txt goes first, redirected or not: a leased page of its
        # domain holds the domain while it waits for it.
        return not robots_fetch(request)

    def backoff(self, request: Request, seconds: float) -> None:
        """Pause *request*'s domain cluster-wide (seconds < 0: exponential)."""
        slot = slot_of(request)
        self.worker.batch.backoffs.append((slot, seconds))
        pause = seconds if seconds >= 0 else self.policy.backoff_base
        self.worker.pauses.pause(slot, time.time() + min(pause, self.policy.backoff_max))
        self.worker.wakeup.set()

    def paused(self, request: Request) -> bool:
        return self.worker.pauses.paused(slot_of(request))

    def recovered(self, request: Request) -> None:
        """A page of *request*'s domain came back fine after the domain's
        pause ended: its next backoff starts over, for the whole cluster
        (a 503 now and then, with pages fine between, doubled the pause up
        to its maximum)."""
        pauses = self.worker.pauses
        slot = slot_of(request)
        if slot in pauses.until and not pauses.paused(slot):
            del pauses.until[slot]  # said once (other nodes may say it too)
            self.worker.batch.backoffs.append((slot, -2))


def _when_sent(action: Callable[[], None]) -> None:
    """Call *action* at the event loop's next turn, when the request whose
    download handler is being called has gone out (now if no loop runs)."""
    try:
        asyncio.get_running_loop().call_soon(action)
    except RuntimeError:
        action()


def _keyed_by_ip(request: Request) -> bool:
    """Whether *request*'s download_slot is its host's IP, as Scrapy's
    downloader sets it with CONCURRENT_REQUESTS_PER_IP (a slot a middleware
    set, e.g. to group subdomains, is not)."""
    slot = request.meta.get("download_slot")
    host = urlparse_cached(request).hostname
    return slot is not None and host is not None and slot == dnscache.get(host)


def keyed_by_scrapy(request: Request) -> bool:
    """Whether *request*'s download_slot is the key Scrapy's downloader
    gives it: its host name, or its host's IP with CONCURRENT_REQUESTS_PER_IP."""
    slot = request.meta.get("download_slot")
    return (slot is not None and slot == urlparse_cached(request).hostname) or _keyed_by_ip(request)


def redirect_slot(request: Request) -> None:
    """Drop the download_slot a redirect to another host carries over from
    the request it came from: Scrapy's downloader wrote that request's host
    there, and RedirectMiddleware copies meta. Kept, the new host's
    Crawl-delay, 429 pauses and page budget were the first host's
    (http://a.example redirecting to https://www.a.example: the Crawl-delay
    of www's robots.txt went to a.example, and www was fetched without it).
    A slot a middleware set (not the source's host) is kept; so is the key
    on responses, where spiders may read it."""
    slot = request.meta.get("download_slot")
    urls = request.meta.get("redirect_urls")
    if slot is None or not urls:
        return
    source = urlsplit(str(urls[-1])).hostname
    if slot == source and urlparse_cached(request).hostname != source:
        del request.meta["download_slot"]


def robots_fetch(request: Request) -> bool:
    """Whether *request* is RobotsTxtMiddleware's fetch of a robots.txt, or
    a redirect it followed from one."""
    if not request.meta.get("dont_obey_robotstxt"):
        return False
    if urlparse_cached(request).path == "/robots.txt":
        return True
    return any(urlsplit(u).path == "/robots.txt" for u in _redirected_from(request))


def _redirected_from(request: Request) -> list[str]:
    """The URLs RedirectMiddleware followed to *request* (meta redirect_urls)."""
    urls = request.meta.get("redirect_urls")
    return [u for u in urls if isinstance(u, str)] if isinstance(urls, list) else []
