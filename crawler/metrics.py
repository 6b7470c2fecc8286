"""A Prometheus metrics endpoint per node (``CRAWLER_METRICS_PORT``)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.settings import BaseSettings

from crawler.exceptions import ConfigError
from crawler.scheduler import RedisScheduler, redis_scheduler

logger = logging.getLogger(__name__)


class NodeCollector(Collector):
    """Reads the node's Scrapy stats and scheduler state at scrape time."""

    def __init__(self, crawler: Crawler, crawl: str) -> None:
        self.crawler = crawler
        self.crawl = crawl

    def collect(self) -> Iterator[Any]:
        stats = self.crawler.stats.get_stats() if self.crawler.stats else {}
        labels = ["crawl"]

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(name, doc, labels=labels)
            family.add_metric([self.crawl], value)
            return family

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, doc, labels=labels)
            family.add_metric([self.crawl], value)
            return family

        errors = stats.get("spider_exceptions/count", 0) + stats.get(
            "downloader/exception_count", 0
        )
        yield counter(
            "crawler_pages",
            "Responses received by this node",
            stats.get("response_received_count", 0),
        )
        yield counter(
            "crawler_items", "Items scraped by this node", stats.get("item_scraped_count", 0)
        )
        yield counter("crawler_errors", "Spider and download errors on this node", errors)
        scheduler = self._scheduler()
        worker = scheduler.worker if scheduler else None
        yield gauge(
            "crawler_in_flight",
            "Requests this node is processing",
            len(scheduler.active) if scheduler else 0,
        )
        yield gauge(
            "crawler_frontier_queued",
            "Requests queued in the shared frontier",
            worker.queued if worker else 0,
        )

    def _scheduler(self) -> RedisScheduler | None:
        return redis_scheduler(self.crawler)


class Metrics:
    """Serves ``/metrics`` on ``CRAWLER_METRICS_ADDRESS:CRAWLER_METRICS_PORT``."""

    def __init__(self, crawler: Crawler, port: int, address: str) -> None:
        self.crawler = crawler
        self.port = port
        self.address = address
        crawler.signals.connect(self.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)
        self._server: Any = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Metrics:
        port = crawler.settings.getint("CRAWLER_METRICS_PORT")
        if not port:
            # Off by default; no message, so nodes do not warn about it.
            raise NotConfigured
        return cls(crawler, port, crawler.settings.get("CRAWLER_METRICS_ADDRESS", "127.0.0.1"))

    def spider_opened(self, spider: Any) -> None:
        name = self.crawler.settings.get("CRAWLER_CRAWL_NAME") or spider.name
        registry = CollectorRegistry()
        registry.register(NodeCollector(self.crawler, name))
        try:
            self._server, _ = start_http_server(self.port, addr=self.address, registry=registry)
        except OSError as exc:  # taken since the check at start (check_metrics_port)
            logger.error("%s", _taken(self.port, self.address, exc))
            return
        logger.info("Serving Prometheus metrics on http://%s:%d/metrics", self.address, self.port)

    def spider_closed(self, spider: Any) -> None:
        if self._server is not None:
            self._server.shutdown()


def check_metrics_port(settings: BaseSettings) -> None:
    """Before a node starts: raises ConfigError if ``CRAWLER_METRICS_PORT``
    is set and cannot be served (another node on the machine has it)."""
    port = settings.getint("CRAWLER_METRICS_PORT")
    if not port:
        return
    address = settings.get("CRAWLER_METRICS_ADDRESS", "127.0.0.1")
    try:
        # As the endpoint binds it: SO_REUSEADDR, so only a listener refuses.
        with socket.create_server((address, port)):
            pass
    except OSError as exc:
        raise ConfigError(_taken(port, address, exc)) from None


def _taken(port: int, address: str, exc: OSError) -> str:
    return (
        f"CRAWLER_METRICS_PORT={port}: cannot serve metrics on {address}:{port} "
        f"({exc.strerror or exc}). If another node on this machine has it, give "
        "each node its own port (or 0: no endpoint)."
    )
