"""The seen-set's mode and parameters, recorded in Redis on first use.

Processes that disagree on ``CRAWLER_SEEN_MODE`` or its parameters would
split the seen-set (exact shards here, Bloom bits there) or, before this
check, loop forever on a commit the Bloom filter refuses. So the first
process to write a crawl records its seen-set in ``{N}:config``; any later
process configured otherwise refuses to start with an error naming both.
"""

from __future__ import annotations

import json
from typing import Any

from crawler.exceptions import ConfigError
from crawler.fingerprints import SeenConfig
from crawler.keys import Keys


def describe(seen: SeenConfig) -> dict[str, Any]:
    """The parameters that decide where a fingerprint is kept."""
    if seen.mode == "bloom":
        return {
            "CRAWLER_SEEN_MODE": "bloom",
            "CRAWLER_BLOOM_CAPACITY": seen.bloom_capacity,
            "CRAWLER_BLOOM_ERROR_RATE": seen.bloom_error_rate,
        }
    return {"CRAWLER_SEEN_MODE": seen.mode, "CRAWLER_SEEN_SHARDS": seen.shards}


def check_seen_config(client: Any, keys: Keys, seen: SeenConfig) -> None:
    """Record *seen* for the crawl, or raise ConfigError if the crawl's record
    differs. *client* is a synchronous redis-py client."""
    mine = describe(seen)
    pipe = client.pipeline(transaction=False)
    pipe.hget(keys.bloom, "layers")
    pipe.hget(keys.config, "seen")
    layers, stored = pipe.execute()
    if stored is None:
        if layers and seen.mode != "bloom":
            # A crawl from before the record: its Bloom layers say what it is.
            raise _mismatch(keys, {"CRAWLER_SEEN_MODE": "bloom"}, mine)
        client.hsetnx(keys.config, "seen", json.dumps(mine, sort_keys=True))
        stored = client.hget(keys.config, "seen")
    recorded = json.loads(stored)
    if recorded != json.loads(json.dumps(mine)):
        raise _mismatch(keys, recorded, mine)


def _mismatch(keys: Keys, recorded: dict[str, Any], mine: dict[str, Any]) -> ConfigError:
    def text(d: dict[str, Any]) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in sorted(d.items()))

    return ConfigError(
        f"crawl {keys.name!r} keeps its seen-set with {text(recorded)}, but this process "
        f"has {text(mine)}. Run every node and command of the crawl with the same "
        f"settings (or `scrapy reset` the crawl to start afresh)."
    )
