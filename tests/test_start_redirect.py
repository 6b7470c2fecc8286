"""A start URL that redirects to another start URL (``/docs`` and ``/docs/``,
``http://`` and ``https://``): plain Scrapy fetches both start requests
and the redirect's target twice (its redirect keeps ``dont_filter``), and
calls the callback for each. The cluster keyed the redirect as a start
request for its target and dropped it as a duplicate: an item lost with no
dead letter and no log line (found crawling nginx's trailing-slash 301s)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from crawler.demosite import QuietServer
from tests.conftest import (
    ANY_TELNET_PORT,
    ROOT,
    SCRAPY,
    read_jsonl,
    run_scrapy,
    scrapy_env,
    start_node,
    wait_nodes,
)


def serve() -> tuple[QuietServer, Counter[str]]:
    counts: Counter[str] = Counter()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            counts[self.path] += 1
            if self.path == "/dir":
                self.send_response(301)
                self.send_header("Location", "/dir/")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = b"<html><title>t</title></html>"
            self.send_response(200 if self.path == "/dir/" else 404)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = QuietServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, counts


def run(spider: str, out: str, redis_url: str | None, *settings: str) -> None:
    args = [SCRAPY, "runspider", spider, "-o", out, *ANY_TELNET_PORT]
    for setting in settings:
        args += ["-s", setting]
    args += ["-s", f"CRAWLER_CRAWL_NAME=startredir-{uuid.uuid4().hex[:8]}"]
    env = scrapy_env(redis_url)
    result = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]


def test_a_start_url_redirecting_to_another_start_url_is_fetched_as_plain_scrapy(
    redis_url, tmp_path
):
    server, counts = serve()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    spider = tmp_path / "startredir.py"
    spider.write_text(
        "import scrapy\n"
        "class StartRedir(scrapy.Spider):\n"
        "    name = 'startredir'\n"
        f"    start_urls = [{base + '/dir'!r}, {base + '/dir/'!r}]\n"
        "    def parse(self, response):\n"
        "        yield {'url': response.url,\n"
        "               'via': response.meta.get('redirect_urls', [None])[0]}\n"
    )
    try:
        run(str(spider), str(tmp_path / "plain.jsonl"), None, "ADDONS={}", "ROBOTSTXT_OBEY=False")
        plain = counts.copy()
        counts.clear()
        run(
            str(spider),
            str(tmp_path / "node.jsonl"),
            redis_url,
            "ROBOTSTXT_OBEY=False",
            "CRAWLER_FINISH_GRACE=1",
        )
    finally:
        server.shutdown()
        server.server_close()
    assert plain == {"/dir": 1, "/dir/": 2}
    assert counts == plain
    key = lambda item: (item["url"], str(item["via"]))  # noqa: E731
    assert sorted(read_jsonl(tmp_path / "node.jsonl"), key=key) == sorted(
        read_jsonl(tmp_path / "plain.jsonl"), key=key
    )


CHAIN_SETTINGS = """BOT_NAME = "chainproj"
SPIDER_MODULES = ["chainproj.spiders"]
ADDONS = {"crawler.addon.DistributedCrawl": 0}
COMMANDS_MODULE = "crawler.commands"
ROBOTSTXT_OBEY = False
"""

CHAIN_SPIDER = """import scrapy


class Chain(scrapy.Spider):
    name = "chain"

    def __init__(self, site, **kwargs):
        super().__init__(**kwargs)
        self.start_urls = [site + "/a", site + "/links"]

    def parse(self, response):
        yield {"url": response.url, "via": response.meta.get("redirect_urls")}
        yield from response.follow_all(css="a")
"""


def chain_project(tmp_path: Path) -> Path:
    project = tmp_path / "chainproj"
    spiders = project / "chainproj" / "spiders"
    spiders.mkdir(parents=True)
    (project / "scrapy.cfg").write_text("[settings]\ndefault = chainproj.settings\n")
    (project / "chainproj" / "__init__.py").write_text("")
    (project / "chainproj" / "settings.py").write_text(CHAIN_SETTINGS)
    (spiders / "__init__.py").write_text("")
    (spiders / "chain.py").write_text(CHAIN_SPIDER)
    return project


def serve_chain() -> tuple[QuietServer, Counter[str], dict[str, threading.Event]]:
    """/a -> 301 -> /b -> 301 -> /c, and /links links to /c. Once an event
    is put in the dict under "b", the next fetch of /b hangs until it is set
    (its node is killed meanwhile)."""
    counts: Counter[str] = Counter()
    hang: dict[str, threading.Event] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            counts[self.path] += 1
            hang_b = hang.pop("b", None) if self.path == "/b" else None
            if hang_b is not None:
                hang_b.wait(60)
                return
            if self.path in ("/a", "/b"):
                self.send_response(301)
                self.send_header("Location", "/b" if self.path == "/a" else "/c")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = b"<html><title>t</title>" + (
                b'<a href="/c">c</a></html>' if self.path == "/links" else b"</html>"
            )
            self.send_response(200 if self.path in ("/c", "/links") else 404)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = QuietServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, counts, hang


@pytest.mark.parametrize("crash", [False, True], ids=["no_crash", "kill_9_during_second_hop"])
def test_every_hop_of_a_start_urls_redirect_chain_is_fetched_as_plain_scrapy(
    redis_url, rclient, tmp_path, crash
):
    """A start URL /a -> 301 -> /b -> 301 -> /c, where /c is also a link of
    another start page: plain Scrapy fetches /c twice (the chain keeps
    dont_filter) and stores both items. The start mark was not stored with
    the first hop (/b), so the /b a node leased back from Redis (the same
    node's, or after a kill -9 another's) made a /c keyed as a link: the
    second /c was a duplicate, one item lost, exit 0, in silence."""
    project = chain_project(tmp_path)
    hang_b = threading.Event()
    server, counts, hang = serve_chain()
    site = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        plain = run_scrapy(
            ["crawl", "chain", "-a", f"site={site}", "-s", "ADDONS={}", "-o", "plain.jsonl"],
            None,
            cwd=project,
        )
        assert plain.returncode == 0, plain.stderr[-3000:]
        plain_counts = counts.copy()
        counts.clear()
        settings = ("CRAWLER_LEASE_TIME=3", "CRAWLER_LEASE_RENEW_INTERVAL=1")
        if crash:
            hang["b"] = hang_b
        args = [f"site={site}"]
        first = start_node(
            "chain", redis_url, tmp_path / "n1.log", *settings, cwd=project, spider_args=args
        )
        nodes = [first]
        if crash:
            # Killed holding /b alone (the rest acknowledged), in flight.
            held = lambda: sum(  # noqa: E731
                rclient.hlen(key) for key in rclient.scan_iter(match="{chain}:held:*")
            )
            deadline = time.monotonic() + 60
            while (counts["/b"], held()) != (1, 1) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert (counts["/b"], held()) == (1, 1), "the first hop was never fetched"
            os.kill(first.pid, signal.SIGKILL)
            first.wait()
            hang_b.set()
            nodes = [
                start_node(
                    "chain",
                    redis_url,
                    tmp_path / "n2.log",
                    *settings,
                    cwd=project,
                    spider_args=args,
                )
            ]
        assert wait_nodes(nodes, 120) == [0]
    finally:
        hang_b.set()
        server.shutdown()
        server.server_close()
    assert plain_counts == {"/a": 1, "/b": 1, "/c": 2, "/links": 1}
    # A crash costs what the killed node had in flight (/b) fetched again.
    assert counts == plain_counts + Counter({"/b": 1} if crash else {})
    out = tmp_path / "node.jsonl"
    exported = run_scrapy(
        ["export", "chain", "-a", f"site={site}", "-o", str(out)], redis_url, cwd=project
    )
    assert exported.returncode == 0, exported.stderr[-3000:]
    key = lambda item: (item["url"], str(item["via"]))  # noqa: E731
    assert sorted(read_jsonl(out), key=key) == sorted(read_jsonl(project / "plain.jsonl"), key=key)


def test_an_errback_of_a_start_urls_redirect_hop_neither_sees_nor_passes_on_the_start_mark(
    redis_url, tmp_path
):
    """A start URL /a -> 301 -> /b whose /b times out: its errback makes a
    request for /c with the failed request's meta, and /links links to /c.
    Plain Scrapy fetches /c once (the errback's request is not dont_filter)
    and the errback's meta holds none of the cluster's keys. The /b leased
    back from Redis carries the start mark again (its next hop is one too),
    so the errback must not see it: its /c was keyed as a hop of /a's chain
    and fetched twice."""
    hang = threading.Event()
    server, counts, hangs = serve_chain()
    site = f"http://127.0.0.1:{server.server_address[1]}"
    spider = tmp_path / "errback.py"
    spider.write_text(
        "import scrapy\n"
        "class Errback(scrapy.Spider):\n"
        "    name = 'errback'\n"
        "    custom_settings = {'RETRY_TIMES': 0, 'DOWNLOAD_TIMEOUT': 1}\n"
        "    async def start(self):\n"
        f"        yield scrapy.Request({site + '/a'!r}, dont_filter=True, errback=self.failed)\n"
        f"        yield scrapy.Request({site + '/links'!r}, dont_filter=True)\n"
        "    def parse(self, response):\n"
        "        yield {'url': response.url}\n"
        "        yield from response.follow_all(css='a')\n"
        "    def failed(self, failure):\n"
        "        meta = failure.request.meta\n"
        "        yield {'failed': failure.request.url, 'meta': sorted(meta)}\n"
        f"        yield scrapy.Request({site + '/c'!r}, meta=meta)\n"
    )
    try:
        hangs["b"] = hang
        run(str(spider), str(tmp_path / "plain.jsonl"), None, "ADDONS={}", "ROBOTSTXT_OBEY=False")
        plain = counts.copy()
        counts.clear()
        hangs["b"] = hang
        run(
            str(spider),
            str(tmp_path / "node.jsonl"),
            redis_url,
            "ROBOTSTXT_OBEY=False",
            "CRAWLER_FINISH_GRACE=1",
            "CRAWLER_DEAD_LETTER_EXIT_CODE=0",  # /b is dead-lettered
        )
    finally:
        hang.set()
        server.shutdown()
        server.server_close()
    assert plain == {"/a": 1, "/b": 1, "/links": 1, "/c": 1}
    assert counts == plain
    key = lambda item: json.dumps(item, sort_keys=True)  # noqa: E731
    assert sorted(read_jsonl(tmp_path / "node.jsonl"), key=key) == sorted(
        read_jsonl(tmp_path / "plain.jsonl"), key=key
    )
