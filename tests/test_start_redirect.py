"""A start URL that redirects to another start URL (``/docs`` and ``/docs/``,
``http://`` and ``https://``): plain Scrapy fetches both start requests
and the redirect's target twice (its redirect keeps ``dont_filter``), and
calls the callback for each. The cluster keyed the redirect as a start
request for its target and dropped it as a duplicate: an item lost with no
dead letter and no log line (found crawling nginx's trailing-slash 301s)."""

from __future__ import annotations

import subprocess
import threading
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler

from crawler.demosite import QuietServer
from tests.conftest import ROOT, SCRAPY, read_jsonl, scrapy_env


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
    args = [SCRAPY, "runspider", spider, "-o", out]
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
