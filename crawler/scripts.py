"""Loads the Lua scripts in ``crawler/lua`` and registers them on a client."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

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
