"""Items, dataclasses, dates, Decimals, bytes and tuples in ``meta`` and
``cb_kwargs`` reach the callback on another node with their types; what
cannot be stored is dead-lettered with its key path, never dropped in
silence, and ``scrapy requeue`` queues it once the crawl allows its class.

The spider is tests/metaproj/metaproj/spiders/carry.py, in a tests-only
project; two real ``scrapy crawl`` nodes crawl the demo site's tree.
"""

from __future__ import annotations

import csv
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from crawler.politeness import make_entry
from tests.conftest import read_jsonl, run_scrapy, start_node

META = Path(__file__).resolve().parent / "metaproj"
PAGES = 13  # a tree: 0 -> 1..3, 1 -> 4..6, 2 -> 7..9, 3 -> 10..12
DEAD_LETTER_EXIT = 3  # CRAWLER_DEAD_LETTER_EXIT_CODE: finished, holding dead letters
CHILD_META = {"page": "Page", "product": "Product", "day": "date", "raw": "bytes", "pair": "tuple"}
CHILD_KWARGS = {"price": "Decimal", "pair": "tuple", "raw": "bytes"}


def crawl(redis_url: str, logs: list[Path], *settings: str) -> list[int]:
    nodes = [start_node("carry", redis_url, log, *settings, cwd=META) for log in logs]
    return [node.wait(timeout=120) for node in nodes]


def exported(redis_url: str, tmp_path: Path, spider: str = "carry") -> dict[str, dict[str, object]]:
    out = tmp_path / "items.jsonl"
    result = run_scrapy(["export", spider, "-o", str(out)], redis_url, cwd=META)
    assert result.returncode == 0, result.stderr
    return {str(item["url"]).rsplit("/", 1)[1]: item for item in read_jsonl(out)}


def test_meta_types_cross_nodes_and_unstorable_values_are_dead_lettered(
    make_site, redis_url, tmp_path
):
    site = make_site(PAGES, tree=True)
    seeded = run_scrapy(["seed", "carry", site.url("/page/0.html")], redis_url, cwd=META)
    assert seeded.returncode == 0, seeded.stderr
    logs = [tmp_path / f"node{i}.log" for i in range(2)]
    assert crawl(redis_url, logs) == [DEAD_LETTER_EXIT] * 2

    fetched = site.page_counts()
    assert sorted(fetched) == sorted(f"/page/{i}.html" for i in range(PAGES) if i not in (10, 11))
    assert set(fetched.values()) == {1}
    items = exported(redis_url, tmp_path)
    assert len(items) == PAGES - 2
    for i in (*range(1, 10), 12):
        item = items[f"{i}.html"]
        assert item["meta_types"] == CHILD_META, item
        assert item["kw_types"] == CHILD_KWARGS, item
        assert item["page_seen"] == "date" and item["product_price"] == "19.99"
        assert item["pair"] == [(i - 1) // 3, "one"]

    # Not dropped in silence: counted, dead-lettered with the key path and type.
    text = "".join(log.read_text() for log in logs)
    counted = re.findall(r"'crawler/unstorable_requests': (\d+)", text)
    assert sum(map(int, counted)) == 2, counted
    listed = run_scrapy(["deadletters", "carry"], redis_url, cwd=META).stdout
    assert "cannot store <GET http://" in listed
    assert "/page/10.html>: meta['lock'] is a lock" in listed
    assert (
        "/page/11.html>: meta['money'] is a Money (class metaextra.Money is not in the meta "
        "class allow-list; add it or its module to CRAWLER_META_CLASSES)" in listed
    ), listed
    assert "2 dead letters" in listed

    # As they are, neither can be queued again; each says why.
    result = run_scrapy(["requeue", "carry"], redis_url, cwd=META)
    assert "requeued 0 dead letters" in result.stdout and "2 left in place" in result.stdout
    assert "/page/10.html: meta['lock'] was a _thread.lock that could not be stored" in (
        result.stdout
    )
    assert "/page/11.html: class metaextra.Money is not in the meta class allow-list" in (
        result.stdout
    )

    # Once the crawl allows the class, the request is queued and crawled.
    allow = "CRAWLER_META_CLASSES=metaextra"
    result = run_scrapy(["requeue", "carry", "-s", allow], redis_url, cwd=META)
    assert "requeued 1 dead letters" in result.stdout and "1 left in place" in result.stdout
    assert crawl(redis_url, [tmp_path / "again.log"], allow) == [DEAD_LETTER_EXIT]
    assert site.page_counts()["/page/11.html"] == 1 and "/page/10.html" not in site.page_counts()
    money = exported(redis_url, tmp_path)["11.html"]
    assert money["meta_types"] == {**CHILD_META, "money": "Money"}
    assert money["money"] == {"amount": "2.50", "currency": "EUR"}


def test_a_stored_class_outside_the_allow_list_is_refused_unimported(
    make_site, redis_url, rclient, tmp_path, monkeypatch
):
    """An entry in Redis naming a class (as a node with a wider allow-list,
    or anyone with write access, may store) is dead-lettered by a node whose
    allow-list does not hold it, before any import; once allowed, requeue
    queues it."""
    site = make_site(PAGES, tree=True)
    marker = tmp_path / "imported"
    monkeypatch.setenv("METATRAP_MARKER", str(marker))
    money = {"$t": "decimal", "v": "2.50"}
    stored = {
        "/page/11.html": {"$t": "item", "c": "metaextra:Money", "v": {"amount": money}},
        "/page/12.html": {"$t": "item", "c": "metatrap:Trap", "v": {}},
    }
    for path, value in stored.items():
        body = json.dumps({"url": site.url(path), "meta": {"value": value}})
        rclient.rpush("{carry}:q:0", make_entry("127.0.0.1", body))
    rclient.zadd("{carry}:prios", {"0": 0})
    assert crawl(redis_url, [tmp_path / "n.log"]) == [DEAD_LETTER_EXIT]
    assert site.page_counts() == {} and not marker.exists()
    listed = run_scrapy(["deadletters", "carry"], redis_url, cwd=META).stdout
    assert "malformed entry: class metaextra.Money is not in the meta class allow-list" in listed
    assert "malformed entry: class metatrap.Trap is not in the meta class allow-list" in listed

    allow = "CRAWLER_META_CLASSES=metaextra"
    result = run_scrapy(["requeue", "carry", "-s", allow], redis_url, cwd=META)
    assert "requeued 1 dead letters" in result.stdout and "1 left in place" in result.stdout
    assert "/page/12.html: class metatrap.Trap is not in the meta class allow-list" in (
        result.stdout
    )
    assert crawl(redis_url, [tmp_path / "again.log"], allow) == [DEAD_LETTER_EXIT]
    assert site.page_counts() == {"/page/11.html": 1} and not marker.exists()


def test_requests_that_cannot_be_stored_never_take_their_neighbours_with_them(
    make_site, redis_url, tmp_path
):
    """A list nested 600 deep, a dict holding itself, a dataclass with an
    unset field (RecursionError, AttributeError: before, only ValueError
    and TypeError were caught): each is dead-lettered with its key path.
    Before, the errors escaped into Scrapy's callback-output workers: after
    100 of them the page's other requests and its item were lost, and a bad
    request in start() ended start() there; the nodes exited 0, finished."""
    site = make_site(PAGES, tree=True)
    logs = [tmp_path / f"node{i}.log" for i in range(2)]
    site_arg = [f"site={site.url('')}"]
    nodes = [start_node("odd", redis_url, log, cwd=META, spider_args=site_arg) for log in logs]
    assert [node.wait(timeout=120) for node in nodes] == [DEAD_LETTER_EXIT] * 2

    fetched = site.page_counts()
    assert sorted(fetched) == sorted(f"/page/{i}.html" for i in range(PAGES)), fetched
    assert set(fetched.values()) == {1}
    assert sorted(exported(redis_url, tmp_path, "odd")) == sorted(f"{i}.html" for i in range(PAGES))

    text = "".join(log.read_text() for log in logs)
    assert "Task exception was never retrieved" not in text
    assert "Error while processing requests from start()" not in text
    counted = re.findall(r"'crawler/unstorable_requests': (\d+)", text)
    assert sum(map(int, counted)) == 120 + 2, counted  # start()'s on each node
    listed = run_scrapy(["deadletters", "odd", "--json"], redis_url, cwd=META).stdout
    reasons = [json.loads(line)["reason"] for line in listed.splitlines() if line.strip()]
    assert len(reasons) == 122, listed[-2000:]
    deep = [r for r in reasons if "nested too deeply to store" in r]
    lazy = [r for r in reasons if "meta['bad'].parsed is a Lazy (that field is not set" in r]
    assert len(deep) == 80 and len(lazy) == 42, reasons[:6]


def test_csv_export_has_every_field_not_only_the_first_item_s(make_site, redis_url, tmp_path):
    """Items come back from Redis as dicts, and Scrapy's CSV exporter takes
    its header from the first one: the field set on one page only was
    dropped from every row (with a warning; export exited 0)."""
    site = make_site(PAGES, tree=True)
    seeded = run_scrapy(["seed", "fields", site.url("/page/0.html")], redis_url, cwd=META)
    assert seeded.returncode == 0, seeded.stderr
    nodes = [start_node("fields", redis_url, tmp_path / f"n{i}.log", cwd=META) for i in range(2)]
    assert [node.wait(timeout=120) for node in nodes] == [0, 0]
    out = tmp_path / "items.csv"
    result = run_scrapy(["export", "fields", "-o", str(out)], redis_url, cwd=META)
    assert result.returncode == 0 and "dropped" not in result.stderr, result.stderr
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == PAGES
    assert {row["note"] for row in rows} == {"", "the only note"}
    assert [r["url"] for r in rows if r["note"]] == [site.url("/page/7.html")]


class FlakySite:
    """Pages that answer 500 the first time each is asked for, then 200."""

    def __init__(self) -> None:
        self.hits: list[tuple[str, int]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                first = all(path != self.path for path, _ in outer.hits)
                status = 500 if first and self.path.startswith("/flaky/") else 200
                outer.hits.append((self.path, status))
                body = f"<html><title>{self.path}</title></html>".encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("spider", ["noretry", "myretry", "stopdl"])
def test_failures_a_spider_owns_are_not_dead_letters(spider, redis_url, tmp_path):
    """A spider that handles 500s itself with retries off, a project's own
    retry middleware, and StopDownload(fail=True): plain Scrapy gets every
    page's item and exits 0. Before, each got 3 to 5 dead letters and exit
    status 3, and `scrapy requeue`, as the warning advised, then stored
    every item twice (helper 34)."""
    site = FlakySite()
    try:
        urls = [site.url(f"/flaky/{i}") for i in range(3)]
        logs = [tmp_path / f"node{i}.log" for i in range(2)]
        args = ["urls=" + ",".join(urls)] if spider == "stopdl" else None
        if args is None:
            assert run_scrapy(["seed", spider, *urls], redis_url, cwd=META).returncode == 0
        nodes = [start_node(spider, redis_url, log, cwd=META, spider_args=args) for log in logs]
        codes = [node.wait(timeout=120) for node in nodes]
        texts = [log.read_text() for log in logs]
        assert codes == [0, 0], texts
        assert not any("Dead-lettering" in text for text in texts), texts
        items = exported(redis_url, tmp_path, spider)
        assert sorted(items) == ["0", "1", "2"], items
        if spider != "stopdl":
            pages = [hit for hit in site.hits if hit[0] != "/robots.txt"]
            assert sorted(pages) == sorted(
                [(f"/flaky/{i}", 500) for i in range(3)] + [(f"/flaky/{i}", 200) for i in range(3)]
            )
        else:
            assert all(item["type"] == "text/html" for item in items.values()), items
    finally:
        site.close()


def test_spider_idle_comes_once_the_whole_crawl_is_finished(make_site, redis_url, tmp_path):
    """A spider_idle handler scheduling a second phase (Scrapy's idiom) ran
    on a node as soon as that node ran out of work, while the crawl went
    on elsewhere (helper 34: 65 items where plain Scrapy has 120, phase 2
    begun after 1 and 4 pages). It now runs once the whole crawl is done:
    every page's phase-1 item is stored before any phase-2 request is
    fetched."""
    site = make_site(PAGES, tree=True)
    seeded = run_scrapy(["seed", "phases", site.url("/page/0.html")], redis_url, cwd=META)
    assert seeded.returncode == 0, seeded.stderr
    logs = [tmp_path / f"node{i}.log" for i in range(2)]
    nodes = [start_node("phases", redis_url, log, cwd=META) for log in logs]
    assert [node.wait(timeout=120) for node in nodes] == [0, 0], [
        log.read_text()[-3000:] for log in logs
    ]
    out = tmp_path / "items.jsonl"
    assert run_scrapy(["export", "phases", "-o", str(out)], redis_url, cwd=META).returncode == 0
    items = read_jsonl(out)
    phase1 = sorted(i["url"] for i in items if i["phase"] == 1)
    phase2 = sorted(i["url"].split("?")[0] for i in items if i["phase"] == 2)
    assert phase1 == sorted(site.url(f"/page/{n}.html") for n in range(PAGES))
    assert phase2 == phase1, (len(phase1), len(phase2))
    # Each node's handler ran once at most (a node that found nothing has
    # nothing to schedule), with every page it had crawled.
    said = [re.findall(r"phase 2: (\d+) detail requests", log.read_text()) for log in logs]
    assert all(len(s) <= 1 for s in said), said
    assert sum(int(n) for s in said for n in s) == PAGES, said


def test_a_spider_idle_handler_scheduling_a_duplicate_lets_the_crawl_end(
    make_site, redis_url, tmp_path
):
    """A handler scheduling a page crawled already at every idle: Scrapy's
    dupefilter drops it and the process closes. The review of the change
    above found that such a request kept the crawl unfinished for good (a
    new round at every finish grace)."""
    site = make_site(PAGES, tree=True)
    seeded = run_scrapy(["seed", "idleagain", site.url("/page/0.html")], redis_url, cwd=META)
    assert seeded.returncode == 0, seeded.stderr
    logs = [tmp_path / f"node{i}.log" for i in range(2)]
    nodes = [start_node("idleagain", redis_url, log, cwd=META) for log in logs]
    assert [node.wait(timeout=60) for node in nodes] == [0, 0], [
        log.read_text()[-3000:] for log in logs
    ]
    assert set(site.page_counts().values()) == {1}
    assert len(site.page_counts()) == PAGES


def test_start_urls_off_allowed_domains_are_fetched_as_in_scrapy(make_site, redis_url, tmp_path):
    """Scrapy's start requests are dont_filter, so OffsiteMiddleware lets
    them (and their redirects) through; the nodes dedupe them instead, and
    OffsiteMiddleware filtered them: nothing fetched, exit 0."""
    site = make_site(PAGES, tree=True)
    logs = [tmp_path / f"node{i}.log" for i in range(2)]
    args = [f"site={site.base}"]
    nodes = [start_node("offstart", redis_url, log, cwd=META, spider_args=args) for log in logs]
    assert [node.wait(timeout=120) for node in nodes] == [0, 0]
    # As plain Scrapy: the start page once, its links filtered as off-site.
    assert site.page_counts() == {"/page/0.html": 1}
    items = exported(redis_url, tmp_path, "offstart")
    assert list(items) == ["0.html"]


def test_commands_take_the_spider_arguments_crawl_takes(make_site, redis_url, tmp_path):
    """A spider whose __init__ needs an argument: `scrapy crawl -a` gives it,
    and so must the commands that make the spider (export, seed, status,
    ...): they raised a TypeError traceback, and the items could not be
    exported at all."""
    site = make_site(PAGES, tree=True)
    args = [f"site={site.base}"]
    logs = [tmp_path / f"node{i}.log" for i in range(2)]
    nodes = [start_node("needsarg", redis_url, log, cwd=META, spider_args=args) for log in logs]
    assert [node.wait(timeout=120) for node in nodes] == [0, 0]

    out = tmp_path / "items.jsonl"
    export = ["export", "needsarg", "-o", str(out)]
    missing = run_scrapy(export, redis_url, cwd=META)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr, missing.stderr
    assert "with -a NAME=VALUE" in missing.stderr, missing.stderr
    result = run_scrapy([*export, "-a", f"site={site.base}"], redis_url, cwd=META)
    assert result.returncode == 0, result.stderr
    assert len(read_jsonl(out)) == PAGES
    status = run_scrapy(["status", "needsarg", "--json", "-a", "site=x"], redis_url, cwd=META)
    assert status.returncode == 0, status.stderr
