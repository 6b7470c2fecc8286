"""The two things the framework needs from Scrapy's engine that it has no
public API for, kept in one place and checked when a node starts.

* Which requests are still being processed. Scrapy keeps a request in the
  engine slot's ``inprogress`` set from download until its callback has
  finished and every item it yielded has left the item pipelines; that is
  exactly when a lease may be acknowledged.
* Waking the engine when work arrives from Redis while it is idle, instead
  of waiting for its 5-second heartbeat.
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
