"""Recrawl on 3 real ``scrapy crawl`` nodes against a site whose pages
change while it is crawled (versions served by the test's own server):
revisits at the configured and the adaptive intervals, conditional requests
and 304s, changed items replacing the old in the store and every version
exported once by ``scrapy export --follow``, measured at the server."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from email.utils import formatdate
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler
from itertools import pairwise
from pathlib import Path

import pytest
from scrapy import Request

from crawler.demosite import QuietServer
from crawler.recrawl import revisit_request
from tests.conftest import ROOT, SCRAPY, read_jsonl, run_scrapy, scrapy_env, start_node, wait_nodes
from tests.hosts import send_html
from tests.test_faults import wait_for
from tests.test_realsite import DOCS
from tests.test_zoo import ZOO

# Gaps between requests as the server saw them: run alone (marker `timing`).
pytestmark = pytest.mark.timing

PAGES = 12


@dataclass
class Hit:
    path: str
    at: float
    status: int
    if_none_match: str | None
    if_modified_since: str | None


class VersionedSite:
    """Page i links to 2i+1 and 2i+2. Its body carries its version. Pages
    i % 3 == 0 send an ETag, i % 3 == 1 a Last-Modified, the others no
    validator (change is found by the body's hash). Validators are honoured
    with a 304. Pages in ``volatile`` get a new version at every fetch."""

    def __init__(self, pages: int, volatile: frozenset[int] = frozenset()) -> None:
        self.pages = pages
        self.version = dict.fromkeys(range(pages), 1)
        self.volatile = volatile
        self.hits: list[Hit] = []
        self.lock = threading.Lock()
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                send_html(self, *site.answer(self.path, self.headers))

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.port}/p/{i}.html"

    def answer(self, path: str, headers: object) -> tuple[int, str, dict[str, str]]:
        get = headers.get  # type: ignore[attr-defined]
        if not path.startswith("/p/"):
            return 404, "", {}
        i = int(path[3:-5])
        with self.lock:
            if i in self.volatile:
                self.version[i] += 1
            version = self.version[i]
            etag, modified = f'"v{version}"', formatdate(1_700_000_000 + version, usegmt=True)
            validators = {}
            if i % 3 == 0:
                validators["ETag"] = etag
            elif i % 3 == 1:
                validators["Last-Modified"] = modified
            fresh = (i % 3 == 0 and get("If-None-Match") == etag) or (
                i % 3 == 1 and get("If-Modified-Since") == modified
            )
            status = 304 if fresh else 200
            self.hits.append(
                Hit(path, time.time(), status, get("If-None-Match"), get("If-Modified-Since"))
            )
        links = "".join(
            f'<a href="/p/{j}.html">{j}</a>' for j in (2 * i + 1, 2 * i + 2) if j < self.pages
        )
        return status, f"<html><title>page {i} v{version}</title>{links}</html>", validators

    def bump(self, pages: list[int]) -> None:
        with self.lock:
            for i in pages:
                self.version[i] += 1

    def fetches(self, i: int) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.path == f"/p/{i}.html"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _run(
    site: VersionedSite,
    redis_url: str,
    tmp_path: Path,
    seconds: int,
    *settings: str,
    trim: bool = False,
):
    """3 nodes for *seconds* (CLOSESPIDER_TIMEOUT) with a follower (started
    first, without the nodes' settings); the follower's items and the nodes'
    logs."""
    seeded = run_scrapy(["seed", "site", site.url(0)], redis_url)
    assert seeded.returncode == 0, seeded.stderr
    out = tmp_path / "items.jsonl"
    follower = subprocess.Popen(
        [SCRAPY, "export", "site", "-o", str(out), "--follow", "-s", f"CRAWLER_EXPORT_TRIM={trim}"],
        cwd=ROOT,
        env=scrapy_env(redis_url),
        stderr=subprocess.PIPE,
        text=True,
    )
    common = ("ROBOTSTXT_OBEY=False", f"CLOSESPIDER_TIMEOUT={seconds}", *settings)
    nodes = [start_node("site", redis_url, tmp_path / f"n{n}.log", *common) for n in range(3)]
    return nodes, follower, out


def _finish(nodes, follower, out: Path, tmp_path: Path) -> tuple[list[dict], list[str]]:
    codes = wait_nodes(nodes, 120)
    logs = [(tmp_path / f"n{n}.log").read_text() for n in range(3)]
    assert codes == [0, 0, 0], logs
    for log in logs:
        assert "Traceback" not in log, log
        assert "Spider closed (closespider_timeout)" in log, log
    time.sleep(1.5)  # the follower's last round
    os.kill(follower.pid, signal.SIGTERM)
    _, err = follower.communicate(timeout=30)
    assert follower.returncode == 0, err
    return read_jsonl(out), logs


@pytest.mark.parametrize(("partitions", "trim"), [(1, False), (3, True)])
def test_revisits_conditional_gets_and_changed_items(
    redis_url, rclient, tmp_path, partitions, trim
):
    site = VersionedSite(PAGES)
    try:
        nodes, follower, out = _run(
            site,
            redis_url,
            tmp_path,
            12,
            "CRAWLER_RECRAWL_AFTER=3",
            f"CRAWLER_PARTITIONS={partitions}",
            trim=trim,
        )
        # Changed once every page was revisited (a fixed 5 s was too short
        # for a node slow to start on a busy machine: its first fetch came
        # after the change).
        wait_for(
            lambda: all(len(site.fetches(i)) >= 2 for i in range(PAGES)), 60, "a revisit of each"
        )
        changed = [0, 1, 2, 5]  # one of each kind of page, and one more
        site.bump(changed)
        items, _ = _finish(nodes, follower, out, tmp_path)
    finally:
        site.close()
    gaps = []
    for i in range(PAGES):
        hits = site.fetches(i)
        assert len(hits) >= 3, (i, hits)  # fetched, then revisited at least twice
        gaps += [b.at - a.at for a, b in pairwise(hits)]
        revisits = hits[1:]
        if i % 3 == 0:
            assert all(h.if_none_match for h in revisits), hits
        elif i % 3 == 1:
            assert all(h.if_modified_since for h in revisits), hits
        else:
            assert not any(h.if_none_match or h.if_modified_since for h in hits), hits
        # The first answer is a 200; unchanged revisits of pages with
        # validators are 304s, and the first revisit after a change is a 200.
        assert hits[0].status == 200
        if i % 3 != 2 and i not in changed:
            assert {h.status for h in revisits} == {304}, hits
        if i % 3 != 2 and i in changed:
            assert [h.status for h in revisits].count(200) == 1, hits
    print(f"revisit gaps: min {min(gaps):.2f}s max {max(gaps):.2f}s (CRAWLER_RECRAWL_AFTER=3)")
    assert min(gaps) >= 3 - 0.05
    assert max(gaps) < 3 + 3
    # Every version once in the follower's output; the store holds the latest.
    titles = sorted(item["title"] for item in items)
    expected = sorted([f"page {i} v1" for i in range(PAGES)] + [f"page {i} v2" for i in changed])
    assert titles == expected, titles
    exported = tmp_path / "all.jsonl"
    done = run_scrapy(["export", "site", "-o", str(exported)], redis_url)
    assert done.returncode == 0, done.stderr
    latest = sorted(item["title"] for item in read_jsonl(exported))
    if trim:
        # Exported, then trimmed: each item keeps a short hash of its value.
        values = [v for k in rclient.scan_iter(match="{site*}:items") for v in rclient.hvals(k)]
        assert len(values) == PAGES and all(v[:1] == b"#" and len(v) == 9 for v in values)
        assert latest == []
    else:
        assert latest == sorted(f"page {i} v{2 if i in changed else 1}" for i in range(PAGES))
    # Each page waits once: in the due set, or queued when it came due as
    # the nodes stopped (seen beside the suite's other tests: 10 due, 2
    # queued); none is held. Status shows the pages to revisit.
    due_keys = list(rclient.scan_iter(match="{site*}:due"))
    assert 1 <= len(due_keys) <= partitions  # one domain: one partition holds it
    waiting = _waiting_pages(rclient)
    assert waiting["held"] == [], waiting
    assert sorted(waiting["due"] + waiting["queued"]) == list(range(PAGES)), waiting
    assert len(waiting["due"]) >= PAGES // 2, waiting
    status = run_scrapy(["status", "site"], redis_url)
    assert "pages to revisit" in status.stdout, status.stdout
    stats = {k.decode(): v for k, v in rclient.hgetall("{site}:clusterstats").items()}
    assert int(stats["recrawl/changed"]) == len(changed)
    assert int(stats["recrawl/not_modified"]) >= 8  # pages with validators, unchanged


# A page's number in an entry's URL ("url":"http://.../p/<i>.html").
_URL_PAGE = re.compile(rb'"url":"[^"]*/p/(\d+)\.html"')


def _waiting_pages(rclient) -> dict[str, list[int]]:
    """The pages (their numbers) in the due sets, in the queues (and parked),
    and held by nodes, over every partition."""
    found: dict[str, list[int]] = {"due": [], "queued": [], "held": []}
    for key in rclient.scan_iter(match="{site*}:*"):
        name = key.decode().split(":", 1)[1]
        kind = rclient.type(key).decode()
        if name == "due":
            values, where = rclient.zrange(key, 0, -1), "due"
        elif name.startswith(("q:", "park:", "parkin:")) and kind == "list":
            values, where = rclient.lrange(key, 0, -1), "queued"
        elif name.startswith("held:") and kind == "hash":
            values, where = rclient.hvals(key), "held"
        else:
            continue
        found[where] += [int(m) for v in values for m in re.findall(_URL_PAGE, v)]
    return found


def test_adaptive_intervals(redis_url, tmp_path):
    """Pages that change at every visit are revisited at the shortest
    interval; pages that never change ever more rarely."""
    volatile = frozenset({0, 1, 2})
    site = VersionedSite(7, volatile=volatile)
    try:
        nodes, follower, out = _run(
            site,
            redis_url,
            tmp_path,
            16,
            "CRAWLER_RECRAWL_AFTER=2",
            "CRAWLER_RECRAWL_ADAPTIVE=True",
            "CRAWLER_RECRAWL_MIN=1",
            "CRAWLER_RECRAWL_MAX=6",
        )
        items, _ = _finish(nodes, follower, out, tmp_path)
    finally:
        site.close()
    for i in range(7):
        gaps = [b.at - a.at for a, b in pairwise(site.fetches(i))]
        print(f"page {i} {'volatile' if i in volatile else 'stable'}: gaps {gaps}")
        # Changed at every visit: 2 s, then 1 s (the minimum). Never changed:
        # 2 s, then 1.5 times longer each time up to 6 s (the maximum). A
        # revisit comes after its interval (counted from the commit that
        # follows the fetch), and at most ~2 s later (a look for due pages
        # every second, then a lease).
        planned = [2.0] + ([1.0] * 20 if i in volatile else [3.0, 4.5, 6.0, 6.0, 6.0])
        assert len(gaps) >= (8 if i in volatile else 3), gaps
        for gap, interval in zip(gaps, planned, strict=False):
            assert interval - 0.05 <= gap < interval + 2, (gaps, planned)
    # Each version of a volatile page once; stable pages once.
    titles = [item["title"] for item in items]
    assert len(titles) == len(set(titles))
    for i in range(7):
        served = [h for h in site.fetches(i) if h.status == 200]
        mine = [t for t in titles if t.startswith(f"page {i} ")]
        assert len(mine) == (len(served) if i in volatile else 1), (i, mine)


class StatusDocServer(SimpleHTTPRequestHandler):
    """Python's own file server (it sends Last-Modified and answers
    If-Modified-Since with 304), recording each answer."""

    protocol_version = "HTTP/1.1"
    answers: list[tuple[str, int, str | None]] = []

    def send_response(self, code: int, message: str | None = None) -> None:
        self.answers.append((self.path, code, self.headers.get("If-Modified-Since")))
        super().send_response(code, message)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.skipif(not (DOCS / "index.html").is_file(), reason="needs python3.11-doc")
def test_crawlspider_revisits_python_docs_conditionally(redis_url, tmp_path):
    """Scrapy's CrawlSpider as its docs write one (tests/zoo pydocs), on a
    copy of Debian's Python docs served by Python's http.server: 2 nodes,
    every page revisited with If-Modified-Since and answered 304, except 3
    pages whose title the test changes, whose items are replaced."""
    root = tmp_path / "docs"
    shutil.copytree(DOCS, root, symlinks=True)
    answers: list[tuple[str, int, str | None]] = []
    handler = type("Recording", (StatusDocServer,), {"answers": answers})
    server = QuietServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    changed = ["library/os.html", "library/re.html", "tutorial/index.html"]
    env = {"ZOO_SITE": base}
    settings = ("CRAWLER_RECRAWL_AFTER=6", "CLOSESPIDER_TIMEOUT=30")
    logs = [tmp_path / f"node{i}.log" for i in range(2)]
    try:
        nodes = [start_node("pydocs", redis_url, log, *settings, cwd=ZOO, env=env) for log in logs]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len({p for p, _, _ in answers}) < 500:
            time.sleep(0.2)
        first_pass = {p for p, code, _ in answers if code == 200 and p.endswith(".html")}
        time.sleep(1)
        for page in changed:
            path = root / page
            # Dated now: a later Last-Modified (one in the future is no
            # validator, and the revisit after it would not be conditional).
            path.write_text(path.read_text().replace("<title>", "<title>CHANGED ", 1))
        codes = wait_nodes(nodes, 120)
    finally:
        server.shutdown()
        server.server_close()
    texts = [log.read_text() for log in logs]
    assert codes == [0, 0], texts
    for text in texts:
        assert "Spider closed (closespider_timeout)" in text, text
        assert "Traceback" not in text and "] ERROR:" not in text, text
    by_path: dict[str, list[tuple[int, str | None]]] = {}
    for path, code, since in answers:
        by_path.setdefault(path, []).append((code, since))
    # The start page is also fetched twice at first, as in plain Scrapy
    # (tests/test_realsite.py): as the start request and as a linked page.
    revisited = [p for p in first_pass - {"/index.html"} if len(by_path[p]) >= 2]
    print(f"{len(first_pass)} pages fetched, {len(revisited)} revisited within 30 s")
    assert len(revisited) > 0.9 * len(first_pass)
    for path in revisited:
        first, *later = by_path[path]
        assert first == (200, None), (path, by_path[path])
        assert all(since for _, since in later), (path, by_path[path])  # conditional
        if path.lstrip("/") in changed:
            assert 200 in [code for code, _ in later], (path, by_path[path])
        else:
            assert {code for code, _ in later} == {304}, (path, by_path[path])
    out = tmp_path / "items.jsonl"
    exported = run_scrapy(["export", "pydocs", "-o", str(out)], redis_url, cwd=ZOO, **env)
    assert exported.returncode == 0, exported.stderr[-2000:]
    items = read_jsonl(out)
    urls = [item["url"] for item in items]
    assert len(urls) == len(set(urls)), "an item was stored twice"
    titles = {item["url"].removeprefix(base + "/"): item["title"] for item in items}
    for page in changed:
        if f"/{page}" in revisited:
            assert titles[page].startswith("CHANGED "), titles[page]


class OverriddenSite(VersionedSite):
    """A VersionedSite whose pages in ``override`` give another answer
    (status, body, headers): a 404, a redirect."""

    def __init__(self, pages: int, volatile: frozenset[int] = frozenset()) -> None:
        self.override: dict[int, tuple[int, str, dict[str, str]]] = {}
        super().__init__(pages, volatile)

    def answer(self, path: str, headers: object) -> tuple[int, str, dict[str, str]]:
        i = int(path[3:-5]) if path.startswith("/p/") else -1
        answer = self.override.get(i)
        if answer is None:
            return super().answer(path, headers)
        with self.lock:
            self.hits.append(Hit(path, time.time(), answer[0], None, None))
        return answer


def test_revisit_answered_404_replaces_items(redis_url, tmp_path):
    """A page that answers 404 on a revisit, to a spider that handles 404
    (the project's `site`): the item it yields for it is the page's new
    version (in the store and once in the follower's output), and the page
    stays on the schedule."""
    site = OverriddenSite(3)
    try:
        nodes, follower, out = _run(site, redis_url, tmp_path, 12, "CRAWLER_RECRAWL_AFTER=2")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and min(len(site.fetches(i)) for i in range(3)) < 2:
            time.sleep(0.1)
        for i in (1, 2):  # one with a Last-Modified, one without validators
            site.override[i] = (404, "<html><title>gone</title></html>", {})
        items, _ = _finish(nodes, follower, out, tmp_path)
    finally:
        site.close()
    for i in (1, 2):
        statuses = [h.status for h in site.fetches(i)]
        assert statuses.count(404) >= 2, statuses  # still revisited
    versions = sorted((item["url"].rsplit("/", 1)[1], item["status"]) for item in items)
    pairs = [("0.html", 200), ("1.html", 200), ("1.html", 404), ("2.html", 200), ("2.html", 404)]
    assert versions == pairs, versions
    exported = tmp_path / "all.jsonl"
    done = run_scrapy(["export", "site", "-o", str(exported)], redis_url)
    assert done.returncode == 0, done.stderr
    latest = sorted(
        (item["url"].rsplit("/", 1)[1], item["status"]) for item in read_jsonl(exported)
    )
    assert latest == [("0.html", 200), ("1.html", 404), ("2.html", 404)], latest


def test_kill_before_ack_stores_one_revisit(redis_url, rclient, tmp_path):
    """A node killed -9 while its pages' items are still in the pipelines
    (fetched, not acknowledged): each page, fetched again by another node,
    waits once to be revisited, even one that differs at every fetch (a
    CSRF token, a timestamp), so it is not fetched twice per interval."""
    site = VersionedSite(4, volatile=frozenset(range(4)))
    slow = 'ITEM_PIPELINES={"tests.slow_item_pipeline.SlowItemPipeline": 100}'
    common = (
        "ROBOTSTXT_OBEY=False",
        "CRAWLER_RECRAWL_AFTER=60",
        "CRAWLER_LEASE_TIME=3",
        "CRAWLER_LEASE_RENEW_INTERVAL=1",
    )
    try:
        seeded = run_scrapy(["seed", "site", site.url(0)], redis_url)
        assert seeded.returncode == 0, seeded.stderr
        victim = start_node("site", redis_url, tmp_path / "victim.log", *common, slow)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not site.fetches(3):
            time.sleep(0.05)
        assert site.fetches(3)
        time.sleep(2)  # page 3's items in the pipeline, its commits sent
        victim.kill()
        victim.wait()
        node = start_node("site", redis_url, tmp_path / "n.log", *common, "CLOSESPIDER_TIMEOUT=10")
        assert wait_nodes([node], 60) == [0]
    finally:
        site.close()
    assert len(site.fetches(3)) == 2  # fetched again after the kill
    waiting = _waiting_pages(rclient)
    assert waiting["held"] == [], waiting
    assert sorted(waiting["due"] + waiting["queued"]) == [0, 1, 2, 3], waiting


def test_revisit_redirected_for_a_while_stays_on_schedule(redis_url, tmp_path):
    """A page that redirects for a while (302 to a page crawled already, a
    maintenance or login page, say) is revisited after as before: once it
    answers again, its new version replaces the old."""
    site = OverriddenSite(3)
    try:
        nodes, follower, out = _run(site, redis_url, tmp_path, 16, "CRAWLER_RECRAWL_AFTER=2")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(site.fetches(1)) < 2:
            time.sleep(0.1)
        site.override[1] = (302, "", {"Location": site.url(0)})
        while time.monotonic() < deadline and site.fetches(1)[-1].status != 302:
            time.sleep(0.1)
        del site.override[1]
        site.bump([1])
        items, _ = _finish(nodes, follower, out, tmp_path)
    finally:
        site.close()
    statuses = [h.status for h in site.fetches(1)]
    assert 302 in statuses, statuses
    after = statuses[statuses.index(302) + 1 :]
    assert 200 in after, statuses  # revisited, unconditionally changed
    assert sorted(i["title"] for i in items if i["url"] == site.url(1)) == [
        "page 1 v1",
        "page 1 v2",
    ]


def test_revisits_ask_the_site_with_scrapys_http_cache_on(redis_url, tmp_path):
    """Scrapy's HttpCacheMiddleware on, with its default policy (which
    answers every request it stored from the cache): a revisit still goes to
    the site, so a change is found."""
    site = VersionedSite(3)
    try:
        nodes, follower, out = _run(
            site,
            redis_url,
            tmp_path,
            12,
            "CRAWLER_RECRAWL_AFTER=2",
            "HTTPCACHE_ENABLED=True",
            f"HTTPCACHE_DIR={tmp_path / 'cache'}",
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and min(len(site.fetches(i)) for i in range(3)) < 1:
            time.sleep(0.1)
        time.sleep(2.5)  # a revisit or the cache's answer since
        site.bump([0, 1, 2])
        items, _ = _finish(nodes, follower, out, tmp_path)
    finally:
        site.close()
    for i in range(3):
        assert len(site.fetches(i)) >= 3, site.fetches(i)
    titles = sorted(item["title"] for item in items)
    assert titles == sorted(f"page {i} v{v}" for i in range(3) for v in (1, 2)), titles


@pytest.mark.parametrize(
    ("meta", "leased_priority"),
    [
        ({"retry_times": 2}, 1),  # two retries at RETRY_PRIORITY_ADJUST=-1
        ({"retry_times": 1, "priority_adjust": -5}, -2),  # the request's own adjust
        ({}, 3),  # not a retry
    ],
)
def test_a_revisit_made_from_a_retry_keeps_the_page_s_priority(meta, leased_priority):
    """A retry is leased with its priority lowered per retry: a revisit made
    from it sank one level each failing cycle (helper 47: -1, -2, -3, -4)."""
    request = Request("http://a.example/p", priority=leased_priority, meta=meta)
    leased = (request.headers, dict(meta), leased_priority, False)
    again = revisit_request(request, leased, {"f": "00"}, -1)
    assert again.priority == 3
    assert "retry_times" not in again.meta


@pytest.mark.parametrize("partitions", [1, 3])
def test_node_back_after_its_leases_expired_stores_no_second_revisit(
    redis_url, rclient, tmp_path, partitions
):
    """A node stopped (SIGSTOP: a long GC pause, a VM frozen, cut off from
    Redis) for longer than CRAWLER_LEASE_TIME while a page's items are in
    its pipeline: its lease is reclaimed and another node fetches the page
    again. Back, it finishes the page: the page must still wait once to be
    revisited, not twice (a changed page's second entry would fetch it twice
    each interval for good)."""
    site = VersionedSite(1, volatile=frozenset({0}))  # a new version each fetch
    slow = 'ITEM_PIPELINES={"tests.slow_item_pipeline.SlowItemPipeline": 100}'
    common = (
        "ROBOTSTXT_OBEY=False",
        "CRAWLER_RECRAWL_AFTER=60",
        "CRAWLER_LEASE_TIME=3",
        "CRAWLER_LEASE_RENEW_INTERVAL=1",
        "CLOSESPIDER_TIMEOUT=20",
        f"CRAWLER_PARTITIONS={partitions}",
    )
    try:
        seed = ["seed", "site", site.url(0), "-s", f"CRAWLER_PARTITIONS={partitions}"]
        seeded = run_scrapy(seed, redis_url)
        assert seeded.returncode == 0, seeded.stderr
        zombie = start_node("site", redis_url, tmp_path / "zombie.log", *common, slow)
        wait_for(lambda: site.fetches(0), 30, "the first fetch")
        time.sleep(0.5)  # its item in the slow pipeline
        zombie.send_signal(signal.SIGSTOP)
        try:
            other = start_node("site", redis_url, tmp_path / "other.log", *common)
            wait_for(lambda: len(site.fetches(0)) >= 2, 30, "the page fetched again")
            time.sleep(1)  # the other node's commit
        finally:
            zombie.send_signal(signal.SIGCONT)
        assert wait_nodes([zombie, other], 60) == [0, 0]
    finally:
        site.close()
    assert len(site.fetches(0)) == 2
    waiting = _waiting_pages(rclient)
    assert waiting["held"] == [], waiting
    assert sorted(waiting["due"] + waiting["queued"]) == [0], waiting


def test_last_modified_in_the_future_hides_no_change(redis_url, tmp_path):
    """Python's http.server sends a file's mtime as Last-Modified even when
    it is in the future (a clock skew, a file unpacked with its dates), and
    answers 304 to an If-Modified-Since not before it. Sent back as it came,
    that date made every revisit a 304 until then: the page's change was
    never found. A date later than the answer's is no validator (RFC 9110
    8.8.2.1): the revisits ask unconditionally, the body's hash finds the
    change, and its item is replaced."""
    root = tmp_path / "www"
    root.mkdir()
    page = root / "p.html"
    page.write_text("<html><title>page v1</title></html>")
    os.utime(page, (time.time() + 7200, time.time() + 7200))  # two hours ahead
    answers: list[tuple[str, int, str | None]] = []
    handler = type("Recording", (StatusDocServer,), {"answers": answers})
    server = QuietServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/p.html"
    try:
        seeded = run_scrapy(["seed", "site", url], redis_url)
        assert seeded.returncode == 0, seeded.stderr
        settings = ("ROBOTSTXT_OBEY=False", "CRAWLER_RECRAWL_AFTER=2", "CLOSESPIDER_TIMEOUT=12")
        node = start_node("site", redis_url, tmp_path / "n.log", *settings)
        wait_for(lambda: answers, 30, "the first fetch")
        time.sleep(0.5)
        page.write_text("<html><title>page v2</title></html>")  # mtime now: before the first
        assert wait_nodes([node], 60) == [0]
    finally:
        server.shutdown()
        server.server_close()
    codes = [code for _, code, _ in answers]
    assert len(codes) >= 3, answers
    assert 200 in codes[1:], answers  # the change was found
    # Asked unconditionally while the file's date was in the future; once
    # changed (dated now), conditionally again.
    assert answers[1][2] is None, answers
    out = tmp_path / "items.jsonl"
    done = run_scrapy(["export", "site", "-o", str(out)], redis_url)
    assert done.returncode == 0, done.stderr
    assert [item["title"] for item in read_jsonl(out)] == ["page v2"]


def test_first_fetch_redirected_is_revisited_and_finds_a_new_target(redis_url, tmp_path):
    """A linked URL that redirects (``/latest`` to today's article) from its
    first fetch is revisited like any page: when it leads elsewhere later,
    the new target is crawled. It was fetched once and then only ever a
    duplicate in the seen-set, so the new target was never found."""
    site = OverriddenSite(3)
    site.version[7] = 1  # a page no other page links to
    site.override[2] = (302, "", {"Location": site.url(1)})
    settings = ("ROBOTSTXT_OBEY=False", "CRAWLER_RECRAWL_AFTER=2", "CLOSESPIDER_TIMEOUT=12")
    try:
        seeded = run_scrapy(["seed", "site", site.url(0)], redis_url)
        assert seeded.returncode == 0, seeded.stderr
        node = start_node("site", redis_url, tmp_path / "n.log", *settings)
        wait_for(lambda: site.fetches(2), 30, "the redirect")
        site.override[2] = (302, "", {"Location": site.url(7)})
        assert wait_nodes([node], 60) == [0]
    finally:
        site.close()
    assert len(site.fetches(2)) >= 2, site.fetches(2)  # revisited
    assert site.fetches(7), site.hits  # its new target crawled
    out = tmp_path / "items.jsonl"
    done = run_scrapy(["export", "site", "-o", str(out)], redis_url)
    assert done.returncode == 0, done.stderr
    urls = sorted(item["url"] for item in read_jsonl(out))
    assert urls == sorted(site.url(i) for i in (0, 1, 7)), urls


def test_robots_txt_changed_while_recrawling_is_obeyed(redis_url, tmp_path):
    """Nodes that recrawl run for good: robots.txt is read again once older
    than CRAWLER_ROBOTSTXT_TTL, so a page the site disallows later is no
    longer fetched. Each node kept the rules it read first until it was
    restarted, and fetched the page at every revisit."""
    site = OverriddenSite(3)
    site.override[-1] = (200, "User-agent: *\nDisallow: /nothing\n", {})  # /robots.txt
    settings = (
        "ROBOTSTXT_OBEY=True",
        "CRAWLER_ROBOTSTXT_TTL=2",
        "CRAWLER_RECRAWL_AFTER=1",
        "CLOSESPIDER_TIMEOUT=14",
    )
    try:
        seeded = run_scrapy(["seed", "site", site.url(0)], redis_url)
        assert seeded.returncode == 0, seeded.stderr
        node = start_node("site", redis_url, tmp_path / "n.log", *settings)
        wait_for(lambda: len(site.fetches(2)) >= 2, 30, "a revisit of page 2")
        site.override[-1] = (200, "User-agent: *\nDisallow: /p/2.html\n", {})
        changed = time.time()
        assert wait_nodes([node], 60) == [0]
    finally:
        site.close()
    # Read again within two TTLs (the node's copy, then the one in Redis).
    late = [h for h in site.fetches(2) if h.at > changed + 2 * 2 + 1]
    assert late == [], late
    assert [h for h in site.fetches(0) if h.at > changed + 2 * 2 + 1], site.hits  # still crawling


class QuotesSite:
    """Scrapy's tutorial site in small: /page/1/ lists ``quotes`` (one div
    per quote), answered with ``status``; no validators, so a change is
    told by the body's hash."""

    def __init__(self, quotes: list[str]) -> None:
        self.quotes = quotes
        self.status = 200
        self.hits: list[tuple[float, int]] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if self.path != "/page/1/":
                    send_html(self, 404, "", {})
                    return
                divs = "".join(
                    f'<div class="quote"><span class="text">{q}</span>'
                    f'<small class="author">A. Author</small></div>'
                    for q in site.quotes
                )
                site.hits.append((time.time(), site.status))
                send_html(self, site.status, f"<html><body>{divs}</body></html>", {})

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _quotes_run(site: QuotesSite, redis_url: str, tmp_path: Path, change, *settings: str):
    """Scrapy's tutorial spider (the zoo's `quotes`) on one node recrawling
    every second: *change* is applied to the site once it was fetched
    twice; the node's log and the items `scrapy export` writes after."""
    env = {"ZOO_SITE": site.base}
    common = ("ROBOTSTXT_OBEY=False", "CRAWLER_RECRAWL_AFTER=1", "CLOSESPIDER_TIMEOUT=10")
    log = tmp_path / "n.log"
    try:
        node = start_node("quotes", redis_url, log, *common, *settings, cwd=ZOO, env=env)
        wait_for(lambda: len(site.hits) >= 2, 30, "a revisit")
        change(site)
        assert wait_nodes([node], 60) == [0], log.read_text()
    finally:
        site.close()
    text = log.read_text()
    assert "Traceback" not in text, text
    out = tmp_path / "items.jsonl"
    done = run_scrapy(["export", "quotes", "-o", str(out)], redis_url, cwd=ZOO, **env)
    assert done.returncode == 0, done.stderr
    return text, read_jsonl(out)


@pytest.mark.parametrize("partitions", [1, 3])
def test_changed_page_with_fewer_items_leaves_no_old_item(redis_url, rclient, tmp_path, partitions):
    """Scrapy's tutorial spider yields one item per quote. The page had 3
    quotes, then 1: its items are exactly the new one. Item ids are the
    page's fingerprint and the item's position, so the changed page
    replaced position 0 and the old positions 1 and 2 stayed in the store:
    `scrapy export` wrote 3 items, 2 the site no longer has. `scrapy status`
    counts the items stored now: it said 3 after the removals, 1 exported."""
    site = QuotesSite(["one", "two", "three"])

    def change(site: QuotesSite) -> None:
        site.quotes = ["uno"]

    _, items = _quotes_run(site, redis_url, tmp_path, change, f"CRAWLER_PARTITIONS={partitions}")
    assert len(site.hits) >= 3, site.hits  # revisited after the change
    assert [item["text"] for item in items] == ["uno"], items
    assert _stat(rclient, "quotes", "items_removed") == 2
    assert _stat(rclient, "quotes", "items") == 3  # each stored anew, counted once
    assert _status_items(redis_url) == len(items)


def _status_items(redis_url: str) -> int:
    """The items `scrapy status quotes` counts, in --json and in its table
    (asserted the same), and `scrapy crawls` too."""
    done = run_scrapy(["status", "quotes", "--json"], redis_url, cwd=ZOO)
    assert done.returncode == 0, done.stderr
    count = json.loads(done.stdout)["items"]
    table = run_scrapy(["status", "quotes"], redis_url, cwd=ZOO)
    assert table.returncode == 0, table.stderr
    assert re.search(rf"^  items +{count:,}$", table.stdout, re.M), table.stdout
    listing = run_scrapy(["crawls", "--json"], redis_url, cwd=ZOO)
    assert listing.returncode == 0, listing.stderr
    assert [c["items"] for c in json.loads(listing.stdout) if c["crawl"] == "quotes"] == [count]
    return int(count)


def _stat(rclient, crawl: str, name: str) -> int:
    """A counter of the scripts' stats, over every partition."""
    keys = rclient.scan_iter(match=f"{{{crawl}*}}:stats")
    return sum(int(rclient.hget(key, name) or 0) for key in keys)


def _stored_titles(rclient, crawl: str = "site") -> list[str]:
    """The titles of the items in the store, over every partition."""
    found = []
    for key in rclient.scan_iter(match=f"{{{crawl}*}}:items"):
        found += [re.search(rb'"title": ?"([^"]*)"', v) for v in rclient.hvals(key)]
    return sorted(m.group(1).decode() for m in found if m)


def test_node_back_after_its_lease_expired_keeps_the_newer_item(redis_url, rclient, tmp_path):
    """A node stopped (SIGSTOP) while a changed page's item (v2) is in its
    pipeline, for longer than CRAWLER_LEASE_TIME: another node fetches the
    page again and stores what it found (v3). Back, the first node's item
    must not replace it: the store kept v2, older than the site's page, and
    as the page stayed v3 (unchanged at every revisit) it kept it for good.
    (With CRAWLER_PARTITIONS > 1 an item stored in another partition than
    its page's lease is not checked: one script cannot read another
    partition's leases; see the README.)"""
    site = VersionedSite(1)  # page 0: an ETag
    slow = 'ITEM_PIPELINES={"tests.slow_item_pipeline.SlowItemPipeline": 100}'
    common = (
        "ROBOTSTXT_OBEY=False",
        "CRAWLER_RECRAWL_AFTER=2",
        "CRAWLER_LEASE_TIME=3",
        "CRAWLER_LEASE_RENEW_INTERVAL=1",
        slow,
    )
    try:
        seeded = run_scrapy(["seed", "site", site.url(0)], redis_url)
        assert seeded.returncode == 0, seeded.stderr
        log = tmp_path / "zombie.log"
        zombie = start_node("site", redis_url, log, *common, "CLOSESPIDER_TIMEOUT=40")
        wait_for(lambda: site.fetches(0), 30, "the first fetch")
        site.bump([0])  # v2, found at the revisit
        wait_for(lambda: len(site.fetches(0)) >= 2, 30, "the revisit")
        time.sleep(0.5)  # its item in the slow pipeline
        zombie.send_signal(signal.SIGSTOP)
        try:
            site.bump([0])  # v3
            other_log = tmp_path / "other.log"
            other = start_node("site", redis_url, other_log, *common, "CLOSESPIDER_TIMEOUT=25")
            wait_for(lambda: "page 0 v3" in _stored_titles(rclient), 40, "v3 stored")
        finally:
            zombie.send_signal(signal.SIGCONT)
        assert wait_nodes([zombie, other], 90) == [0, 0], log.read_text()
    finally:
        site.close()
    assert [h.status for h in site.fetches(0)][:3] == [200, 200, 200], site.fetches(0)
    assert _stored_titles(rclient) == ["page 0 v3"]
    out = tmp_path / "items.jsonl"
    done = run_scrapy(["export", "site", "-o", str(out)], redis_url)
    assert done.returncode == 0, done.stderr
    assert [item["title"] for item in read_jsonl(out)] == ["page 0 v3"]
    assert _stat(rclient, "site", "items_stale") == 1


def test_page_failing_at_every_revisit_has_one_dead_letter(redis_url, tmp_path):
    """A page on the revisit schedule that fails at every revisit (a 500
    the spider does not handle, retries off) keeps one dead letter, the
    latest, with how many revisits failed: each failing revisit added one
    more, for good (`scrapy requeue` leaves revisits in place). `scrapy
    deadletters` shows the count; `scrapy requeue` still leaves it."""
    site = QuotesSite(["one"])

    def change(site: QuotesSite) -> None:
        site.status = 500

    _, items = _quotes_run(site, redis_url, tmp_path, change, "RETRY_TIMES=0")
    failed = [h for h in site.hits if h[1] == 500]
    assert len(failed) >= 3, site.hits
    assert [item["text"] for item in items] == ["one"]  # a 500 keeps the page's item
    env = {"ZOO_SITE": site.base}
    listed = run_scrapy(["deadletters", "quotes", "--json"], redis_url, cwd=ZOO, **env)
    assert listed.returncode == 0, listed.stderr
    letters = [json.loads(line) for line in listed.stdout.splitlines()]
    assert len(letters) == 1, letters
    assert letters[0]["count"] == len(failed), (letters, site.hits)
    assert letters[0]["url"] == site.base + "/page/1/"
    assert "HTTP 500" in letters[0]["reason"]
    shown = run_scrapy(["deadletters", "quotes"], redis_url, cwd=ZOO, **env)
    assert f"its page's revisits failed {len(failed)} times" in shown.stdout, shown.stdout
    assert "1 dead letters in crawl 'quotes'" in shown.stdout, shown.stdout
    requeued = run_scrapy(["requeue", "quotes"], redis_url, cwd=ZOO, **env)
    assert "still on the revisit schedule" in requeued.stdout + requeued.stderr, requeued
    status = run_scrapy(["status", "quotes", "--json"], redis_url, cwd=ZOO, **env)
    assert json.loads(status.stdout)["dead_letters"] == 1, status.stdout


@pytest.mark.parametrize(("status", "kept"), [(404, []), (410, []), (500, ["one", "two"])])
def test_revisit_answered_an_error_the_spider_does_not_handle(redis_url, tmp_path, status, kept):
    """Scrapy's tutorial spider handles no error status (HttpErrorMiddleware
    drops the answer before the callback). A revisit answered 404 or 410:
    the page is gone, so are its items (they stayed, and `scrapy export`
    wrote a page the site no longer has). Answered 500 (retries off, as a
    server having a bad minute): its items stay."""
    site = QuotesSite(["one", "two"])

    def change(site: QuotesSite) -> None:
        site.status = status

    _, items = _quotes_run(site, redis_url, tmp_path, change, "RETRY_TIMES=0")
    assert [h for h in site.hits if h[1] == status], site.hits
    assert [item["text"] for item in items] == kept, items


def test_page_gone_for_a_while_comes_back_with_its_items(redis_url, tmp_path):
    """A page answering 404 for a few revisits (a deploy gone wrong) loses
    its items, and has them again once it answers as before: the revisit
    after the 404 asks unconditionally and finds it changed."""
    site = QuotesSite(["one", "two"])

    def change(site: QuotesSite) -> None:
        site.status = 404
        wait_for(lambda: [h for h in site.hits if h[1] == 404][1:], 30, "two 404s")
        site.status = 200

    _, items = _quotes_run(site, redis_url, tmp_path, change, "RETRY_TIMES=0")
    statuses = [h for _, h in site.hits]
    assert 200 in statuses[statuses.index(404) :], statuses
    assert [item["text"] for item in items] == ["one", "two"], items
    # Removed, then stored again (counted as new): status counted 4.
    assert _status_items(redis_url) == 2


def test_crawl_delay_lowered_in_robots_txt_read_again_is_followed(redis_url, rclient, tmp_path):
    """robots.txt read again after CRAWLER_ROBOTSTXT_TTL asks for a shorter
    Crawl-delay, then none: the cluster follows it. It kept the longest it
    ever read (crawler/lua/crawl_delay.lua), so a site that lowered its
    Crawl-delay was crawled at the old pace until the crawl was reset."""
    site = OverriddenSite(3)
    site.override[-1] = (200, "User-agent: *\nCrawl-delay: 1\n", {})  # /robots.txt
    settings = ("ROBOTSTXT_OBEY=True", "CRAWLER_ROBOTSTXT_TTL=1", "CRAWLER_RECRAWL_AFTER=1")

    def delay() -> bytes | None:
        return rclient.hget("{site}:dcrawl", "127.0.0.1")

    try:
        seeded = run_scrapy(["seed", "site", site.url(0)], redis_url)
        assert seeded.returncode == 0, seeded.stderr
        node = start_node("site", redis_url, tmp_path / "n.log", *settings)
        try:
            wait_for(lambda: delay() == b"1000", 30, "Crawl-delay 1 s in Redis")
            site.override[-1] = (200, "User-agent: *\nCrawl-delay: 0.5\n", {})
            wait_for(lambda: delay() == b"500", 30, "Crawl-delay 0.5 s in Redis")
            site.override[-1] = (200, "User-agent: *\nDisallow: /nothing\n", {})
            wait_for(lambda: delay() == b"0", 30, "no Crawl-delay in Redis")
            node.send_signal(signal.SIGTERM)
            assert wait_nodes([node], 60) == [0]
        finally:
            if node.poll() is None:
                node.kill()
                node.wait()
    finally:
        site.close()
