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
"""

from __future__ import annotations

from typing import Any

from scrapy import Request

from crawler.exceptions import ConfigError


def check_engine(engine: Any) -> None:
    slot = getattr(engine, "_slot", None)
    if slot is None or not hasattr(slot, "inprogress") or not hasattr(slot, "nextcall"):
        raise ConfigError(
            "this Scrapy version's engine has no slot.inprogress/nextcall; "
            "install a Scrapy version allowed by requirements.txt."
        )


def cluster_politeness(engine: Any) -> None:
    """Turn off the node's own per-domain delay and concurrency limit: the
    frontier applies DOWNLOAD_DELAY, CONCURRENT_REQUESTS_PER_DOMAIN and
    DOWNLOAD_SLOTS to the whole cluster, and a request it hands out must be
    sent at once (its start is what times the domain's next request).
    CONCURRENT_REQUESTS (per node) and CONCURRENT_REQUESTS_PER_IP still apply."""
    downloader = getattr(engine, "downloader", None)
    names = ("_delay", "_jitter", "per_slot_settings", "domain_concurrency", "total_concurrency")
    if downloader is None or not all(hasattr(downloader, n) for n in names):
        raise ConfigError(
            "this Scrapy version's downloader has no _delay/_jitter/per_slot_settings/"
            "domain_concurrency; install a Scrapy version allowed by requirements.txt."
        )
    downloader._delay = 0.0
    downloader._jitter = 0.0
    downloader.per_slot_settings = {}
    downloader.domain_concurrency = downloader.total_concurrency or 1_000_000


def in_progress(engine: Any) -> set[Request]:
    slot = getattr(engine, "_slot", None)
    return slot.inprogress if slot is not None else set()


def wake(engine: Any) -> None:
    slot = getattr(engine, "_slot", None)
    if slot is not None and slot.closing is None:
        slot.nextcall.schedule()


def stopping(engine: Any) -> bool:
    """True once the engine stops taking requests (SIGTERM, Ctrl-C, close)."""
    slot = getattr(engine, "_slot", None)
    return not getattr(engine, "running", False) or (slot is not None and slot.closing is not None)
