"""``scrapy status SPIDER [--json]``: where the cluster's crawl stands."""

from __future__ import annotations

import argparse
import json
from typing import Any, ClassVar

import redis
from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError

from crawler.commands._common import open_crawl, run_guarded
from crawler.connection import redact

_COUNTERS = ("queued", "leased", "seen", "done", "dead", "items", "duplicates")


class Command(ScrapyCommand):
    requires_project = True
    requires_crawler_process = False
    default_settings: ClassVar[dict[str, Any]] = {"LOG_LEVEL": "WARNING"}

    def syntax(self) -> str:
        return "<spider> [--json]"

    def short_desc(self) -> str:
        return "Show a distributed crawl's counts and live nodes"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("--json", action="store_true", help="print JSON")

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if len(args) != 1:
            raise UsageError("name one spider")
        run_guarded(self, lambda: self._run(args[0], opts.json))

    def _run(self, name: str, as_json: bool) -> None:
        assert self.settings is not None
        crawl = open_crawl(self.settings, name)
        keys = crawl.config.keys
        client: Any = redis.Redis.from_url(crawl.url)
        now_s, now_us = client.time()
        now_ms = now_s * 1000 + now_us // 1000
        stats = client.hmget(keys.stats, list(_COUNTERS))
        counts = {k: int(v or 0) for k, v in zip(_COUNTERS, stats, strict=True)}
        counts["in_flight"] = counts.pop("leased")
        counts["start_urls"] = (
            client.llen(keys.start_urls) if client.type(keys.start_urls) == b"list" else 0
        )
        nodes = []
        for node, deadline in client.zrange(keys.nodes, 0, -1, withscores=True):
            info = json.loads(client.hget(keys.nodeinfo, node) or b"{}")
            nodes.append(
                {
                    "node": node.decode(),
                    "host": info.get("host"),
                    "pid": info.get("pid"),
                    "held": client.hlen(keys.held(node.decode())),
                    "alive": deadline > now_ms,
                }
            )
        client.close()
        if as_json:
            print(json.dumps({"crawl": crawl.config.name, **counts, "nodes": nodes}))
            return
        print(f"crawl {crawl.config.name!r} on {redact(crawl.url)}")
        for key, value in counts.items():
            print(f"  {key.replace('_', ' '):<12} {value:>12,}")
        print(f"  nodes        {sum(n['alive'] for n in nodes):>12} live")
        for n in nodes:
            state = "live" if n["alive"] else "lost (lease expired)"
            print(
                f"    {n['node']:<40} host {n['host']} pid {n['pid']}  holds {n['held']}  {state}"
            )
