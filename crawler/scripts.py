"""Loads the Lua scripts in ``crawler/lua`` and registers them on a client."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

# Scripts that keep per-domain politeness state start with its functions.
_POLITE = {"commit", "lease", "requeue_held", "reserve"}


def script_source(name: str) -> str:
    """The source of script *name*, led by the politeness functions if it uses them."""
    text = resources.files("crawler").joinpath("lua", f"{name}.lua").read_text()
    if name in _POLITE:
        return script_source("_polite") + "\n" + text
    return text


def check_scripting(client: Any) -> None:
    """Run a trivial script as the scripts are run (SCRIPT LOAD, then
    EVALSHA) on the blocking *client*, raising what Redis answers: a server
    with those commands renamed away, or an ACL user without them, is found
    before a node starts, not by its first heartbeat inside Scrapy's engine
    start (three tracebacks before the error)."""
    client.evalsha(client.script_load("return 1"), 0)


@dataclass(frozen=True)
class Scripts:
    commit: AsyncScript
    lease: AsyncScript
    lease_raw: AsyncScript
    heartbeat: AsyncScript
    expired: AsyncScript
    requeue_held: AsyncScript
    requeue_dead: AsyncScript
    add_stats: AsyncScript
    bloom_grow: AsyncScript
    due_peek: AsyncScript
    due_move: AsyncScript
    reserve: AsyncScript

    @classmethod
    def register(cls, client: aioredis.Redis) -> Scripts:
        names = cls.__dataclass_fields__
        return cls(**{name: client.register_script(script_source(name)) for name in names})
