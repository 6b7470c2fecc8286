"""The spider zoo: spiders written as Scrapy's and scrapy-redis's docs show
them (tests/zoo/), each crawled by two real ``scrapy crawl`` nodes against
tests/zoosite.py's counting server.

For each spider: every URL is fetched as many times as one plain Scrapy
process fetches it (once; robots.txt once more when the spider asks for it
itself; a 500 page 1 + RETRY_TIMES times), every item is exported with the
values and types its callbacks saw, and both nodes exit 0 with ``finished``.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REDIS_CLI, RedisServer, read_jsonl, run_scrapy, start_node, wait_nodes
from tests.zoosite import (
    AGAIN_PAGES,
    BANDWIDTH_PAGE,
    BANDWIDTH_PAGES,
    CARRY_PAGES,
    CATEGORIES,
    FEED_ROWS,
    H3_PAGES,
    ITEMS,
    REDIS_PAGES,
    SHOPS,
    TREE_PAGES,
    WALL_PAGES,
    ZooServer,
)

ZOO = Path(__file__).resolve().parent / "zoo"
NODE_TIMEOUT = 60
_EXCEPTION = re.compile(r"^[\w.]+(Error|Exception): ")
Items = list[dict[str, Any]]


@pytest.fixture
def zoo_site(monkeypatch: pytest.MonkeyPatch) -> Iterator[ZooServer]:
    server = ZooServer()
    # The zoo's spiders read their site's URL from here (tests/zoo/zoo/__init__.py).
    monkeypatch.setenv("ZOO_SITE", server.base)
    yield server
    server.close()


def problems(logs: list[str]) -> str:
    """The lines of the nodes' logs a user would look at first."""
    marks = (" ERROR: ", " WARNING: ", " CRITICAL: ", "Traceback", "Spider closed")
    lines = [
        f"node{i}: {line}"
        for i, log in enumerate(logs)
        for line in log.splitlines()
        if any(mark in line for mark in marks) or _EXCEPTION.match(line)
    ]
    return "\n".join(lines[:40])


def crawl_two_nodes(
    spider: str, redis_url: str, tmp_path: Path, args: list[str]
) -> tuple[list[int | None], list[str]]:
    logs = [tmp_path / f"{spider}-node{i}.log" for i in range(2)]
    nodes = [start_node(spider, redis_url, log, cwd=ZOO, spider_args=args) for log in logs]
    codes = wait_nodes(nodes, NODE_TIMEOUT)
    return codes, [log.read_text() if log.exists() else "" for log in logs]


def export(spider: str, redis_url: str, tmp_path: Path) -> Items:
    out = tmp_path / f"{spider}.jsonl"
    result = run_scrapy(["export", spider, "-o", str(out)], redis_url, cwd=ZOO)
    assert result.returncode == 0, result.stderr[-3000:]
    return read_jsonl(out)  # type: ignore[return-value]


def lpush(redis: RedisServer, key: str, *values: str) -> None:
    """Seed as scrapy-redis's README says: ``redis-cli lpush KEY VALUE``."""
    cmd = [REDIS_CLI, "-p", str(redis.port), "lpush", key, *values]
    subprocess.run(cmd, check=True, capture_output=True, text=True)


def dead_letters(spider: str, redis_url: str) -> list[tuple[str, str]]:
    """(URL, reason) of each dead letter, as ``scrapy deadletters --json`` lists them."""
    result = run_scrapy(["deadletters", spider, "--json"], redis_url, cwd=ZOO)
    assert result.returncode == 0, result.stderr[-3000:]
    letters = []
    for line in result.stdout.splitlines():
        letter = json.loads(line)
        try:
            url = json.loads(letter.get("entry") or "")["url"]
        except (ValueError, TypeError, KeyError):
            url = str(letter.get("entry"))
        letters.append((url, str(letter.get("reason"))))
    return sorted(letters)


def canonical(items: Items) -> list[str]:
    return sorted(json.dumps(item, sort_keys=True) for item in items)


# -- what each spider fetches and yields ------------------------------------


def crawl_fetched(_base: str) -> dict[str, int]:
    fetched = {"/robots.txt": 1, "/crawl/": 1}
    fetched |= {f"/crawl/category.php?id={c}": 1 for c in range(CATEGORIES)}
    fetched |= {f"/crawl/item.php?id={i}": 1 for i in range(ITEMS)}
    fetched |= {f"/crawl/additional.php?id={i}": 1 for i in range(ITEMS)}
    # A 404 goes to the rule's errback; a 500 is retried (RETRY_TIMES = 2) first.
    return fetched | {"/crawl/item.php?id=missing": 1, "/crawl/item.php?id=broken": 3}


def crawl_dead_letters(base: str) -> list[tuple[str, str]]:
    # The cluster gave up on the 500 page after its retries (its errback ran,
    # as in plain Scrapy): one dead letter, so the nodes exit
    # CRAWLER_DEAD_LETTER_EXIT_CODE (crawler/outcome.py).
    reason = "HTTP 500 Internal Server Error (after 3 attempts)"
    return [(f"{base}/crawl/item.php?id=broken", reason)]


def crawl_items(base: str, items: Items) -> None:
    found: dict[str, str] = {}
    for item in items:
        url = item.get("failed_url") or f"{base}/crawl/item.php?id={item['id'][0]}"
        found[url] = item.pop("found_on")
    category0 = f"{base}/crawl/category.php?id=0"
    expected: Items = [
        {"failed_url": f"{base}/crawl/item.php?id=missing", "status": 404},
        {"failed_url": f"{base}/crawl/item.php?id=broken", "status": 500},
    ]
    for i in range(ITEMS):
        expected.append(
            {
                "id": [str(i)],
                "name": f"Item {i}",
                "description": f"Description of item {i}",
                "link_text": f"link item.php?id={i}",
                "additional_data": f"Additional data {i}",
            }
        )
        # process_request noted the page the link was found on: its category
        # page, or the item before it (its "related" link).
        category = f"{base}/crawl/category.php?id={i // 4}"
        before = f"{base}/crawl/item.php?id={(i - 1) % ITEMS}"
        assert found.get(f"{base}/crawl/item.php?id={i}") in (category, before), found
    assert found[f"{base}/crawl/item.php?id=missing"] == category0
    assert canonical(items) == canonical(expected)


def sitemap_fetched(_base: str, blog: bool = False) -> dict[str, int]:
    # robots.txt twice, as in plain Scrapy: once by the robots.txt middleware
    # (ROBOTSTXT_OBEY) for the whole cluster, once as the spider's sitemap URL.
    fetched = {"/robots.txt": 2, "/sitemap_index.xml": 1, "/sitemap_shops.xml": 1}
    fetched["/sitemap_shops_more.xml.gz"] = 1
    if blog:  # sitemap_follow left to its default: every sitemap is followed
        fetched["/sitemap_blog.xml"] = 1
    return fetched | {f"/shop/{i}.html": 1 for i in range(SHOPS)}


def sitemap_items(base: str, items: Items) -> None:
    expected = [{"url": f"{base}/shop/{i}.html", "title": f"Shop {i}"} for i in range(SHOPS)]
    assert canonical(items) == canonical(expected)


def combined_fetched(base: str) -> dict[str, int]:
    return sitemap_fetched(base, blog=True) | {"/about.html": 1}


def combined_items(base: str, items: Items) -> None:
    expected = [{"url": f"{base}/shop/{i}.html", "kind": "shop"} for i in range(SHOPS)]
    expected.append({"url": f"{base}/about.html", "kind": "other"})
    assert canonical(items) == canonical(expected)


def xmlfeed_items(_base: str, items: Items) -> None:
    expected = [
        {
            "id": str(i),
            "name": f"<name>Name {i}</name>",
            "description": f"<description>Description {i}</description>",
        }
        for i in range(1, FEED_ROWS + 1)
    ]
    assert canonical(items) == canonical(expected)


def csvfeed_items(_base: str, items: Items) -> None:
    expected = [
        {"id": str(i), "name": f"Name {i}", "description": f"Description {i}; with a semicolon"}
        for i in range(1, FEED_ROWS + 1)
    ]
    assert canonical(items) == canonical(expected)


def async_start_items(_base: str, items: Items) -> None:
    expected = [{"title": f"<h3>Heading {i}</h3>"} for i in range(1, H3_PAGES + 1)]
    expected += [{"title": "from start()"}] * 2  # once each, not once per node
    assert canonical(items) == canonical(expected)


def again_fetched(_base: str) -> dict[str, int]:
    # The start URL's redirect target again when linked back; page 1 again
    # for parse_again.
    fetched = pages("/again/", AGAIN_PAGES)(_base)
    return fetched | {"/again/start": 1, "/again/0.html": 2, "/again/1.html": 2}


def again_items(base: str, items: Items) -> None:
    # An item for each fetch, as one plain Scrapy process exports them.
    expected = [{"url": f"{base}/again/{i}.html", "kind": "page"} for i in range(AGAIN_PAGES)]
    expected += [
        {"url": f"{base}/again/0.html", "kind": "page"},
        {"url": f"{base}/again/1.html", "kind": "again"},
    ]
    assert canonical(items) == canonical(expected)


def wall_fetched(_base: str) -> dict[str, int]:
    # The root's redirect to itself, then the root; pages linking back to
    # it do not fetch it again (its link key is seen: plain Scrapy, whose
    # start request is not in its seen-set, would fetch it a third time).
    return pages("/wall/", WALL_PAGES)(_base) | {"/wall/0.html": 2}


def wall_items(base: str, items: Items) -> None:
    expected = [{"url": f"{base}/wall/{i}.html"} for i in range(WALL_PAGES)]
    assert canonical(items) == canonical(expected)


CARRIED_TYPES = {
    "page": "Page",
    "visit": "Visit",
    "day": "date",
    "at": "datetime",
    "naive": "datetime",
    "clock": "time",
    "span": "timedelta",
    "price": "Decimal",
    "raw": "bytes",
    "pair": "tuple",
    "tags": "set",
}


def poll_fetched(_base: str) -> dict[str, int]:
    # The live page for each of the three requests, and from the errbacks of
    # the 404 page and of the two robots.txt disallows (never fetched).
    fetched = {"/robots.txt": 1, "/poll/": 1, "/poll/gone": 1}
    return fetched | {"/poll/live": 6}


def poll_items(base: str, items: Items) -> None:
    # An item of each reading, as one plain Scrapy process exports them:
    # identical dont_filter requests are each another request, with items
    # of their own (their ids were derived from the request's content alone,
    # so the cluster exported 3 items of the 6).
    expected = [{"url": f"{base}/poll/live", "score": "2-1"}] * 6
    assert canonical(items) == canonical(expected)


def tagged_items(base: str, items: Items) -> None:
    # Each page's request read back as the project's TaggedRequest with its
    # tag (it was dead-lettered on every node, "request class ... is not in
    # CRAWLER_REQUEST_CLASSES": 0 of 19 pages).
    expected = [
        {"url": f"{base}/tree/{i}.html", "tag": f"{base}/tree/{(i - 1) // 2}.html"}
        | {"class": "TaggedRequest"}
        for i in range(1, TREE_PAGES)
    ]
    assert canonical(items) == canonical(expected)


def carried_values(base: str, parent: int, depth: int) -> dict[str, Any]:
    main_url = f"{base}/carry/{parent}.html"
    return {
        "page": {"url": main_url, "title": f"carry {parent}"},
        "visit": {"url": main_url, "depth": depth},
        "day": "2024-02-29",
        "at": "2024-02-29T13:30:15.123456+05:30",
        "naive": "2024-02-29T13:30:15",
        "clock": "13:30:15",
        "span": 86405.0,
        "price": "19.99",
        "raw": b"\x00\xff raw bytes".hex(),
        "pair": [1, "one"],
        "tags": ["a", "b"],
    }


def carry_items(base: str, items: Items) -> None:
    expected = []
    for page in range(1, CARRY_PAGES):
        parent = (page - 1) // 2
        values = carried_values(base, parent, depth=(parent + 1).bit_length() - 1)
        expected.append(
            {
                "main_url": f"{base}/carry/{parent}.html",
                "other_url": f"{base}/carry/{page}.html",
                "foo": "bar",
                "cb_kwargs_types": CARRIED_TYPES,
                "cb_kwargs_values": values,
                "meta_types": CARRIED_TYPES,
                "meta_values": values,
            }
        )
    assert canonical(items) == canonical(expected)


def redis_spider_items(base: str, items: Items) -> None:
    expected = [
        {"name": f"Redis page {i}", "url": f"{base}/redis/{i}.html"} for i in range(REDIS_PAGES)
    ]
    assert canonical(items) == canonical(expected)


def redis_crawl_items(base: str, items: Items) -> None:
    # The seed goes to parse_start_url (no item); the rule's pages to parse_page.
    expected = [{"name": f"tree {i}", "url": f"{base}/tree/{i}.html"} for i in range(1, TREE_PAGES)]
    assert canonical(items) == canonical(expected)


def seed_redis_spider(site: ZooServer, redis: RedisServer) -> None:
    # Plain URLs, the README's JSON form, and one URL pushed twice.
    urls = [site.url(f"/redis/{i}.html") for i in range(REDIS_PAGES)]
    json_seeds = [json.dumps({"url": u, "meta": {"job-id": "123xsd"}}) for u in urls[8:]]
    lpush(redis, "myspider:start_urls", *urls[:8], *json_seeds, urls[0])


def seed_redis_crawler(site: ZooServer, redis: RedisServer) -> None:
    lpush(redis, "mycrawler:start_urls", site.url("/tree/0.html"))


@dataclass
class Case:
    spider: str
    fetched: Callable[[str], dict[str, int]]
    check_items: Callable[[str, Items], None]
    seed: Callable[[ZooServer, RedisServer], None] | None = None
    args: tuple[str, ...] = ()
    seed_key: str = ""
    dead: Callable[[str], list[tuple[str, str]]] = lambda _base: []


def pages(prefix: str, count: int, first: int = 0) -> Callable[[str], dict[str, int]]:
    return lambda _base: (
        {"/robots.txt": 1} | {f"{prefix}{i}.html": 1 for i in range(first, first + count)}
    )


def one(path: str) -> Callable[[str], dict[str, int]]:
    return lambda _base: {"/robots.txt": 1, path: 1}


CASES = [
    Case("crawl", crawl_fetched, crawl_items, dead=crawl_dead_letters),
    Case("sitemap", sitemap_fetched, sitemap_items),
    Case("sitemap_combined", combined_fetched, combined_items),
    Case("xmlfeed", one("/feed.xml"), xmlfeed_items),
    Case("csvfeed", one("/feed.csv"), csvfeed_items),
    Case("async_start", pages("/h3/", H3_PAGES, first=1), async_start_items),
    Case("carry", pages("/carry/", CARRY_PAGES), carry_items),
    Case("again", again_fetched, again_items),
    Case("wall", wall_fetched, wall_items),
    Case("poll", poll_fetched, poll_items),
    Case("tagged", pages("/tree/", TREE_PAGES), tagged_items),
    Case(
        "myspider_redis",
        pages("/redis/", REDIS_PAGES),
        redis_spider_items,
        seed_redis_spider,
        ("domain=127.0.0.1",),
        "myspider:start_urls",
    ),
    Case(
        "mycrawler_redis",
        pages("/tree/", TREE_PAGES),
        redis_crawl_items,
        seed_redis_crawler,
        ("domain=127.0.0.1",),
        "mycrawler:start_urls",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.spider for c in CASES])
def test_spider_runs_unchanged_on_two_nodes(
    case: Case, zoo_site: ZooServer, redis_server: RedisServer, redis_url: str, tmp_path: Path
) -> None:
    if case.seed is not None:
        case.seed(zoo_site, redis_server)
    codes, logs = crawl_two_nodes(case.spider, redis_url, tmp_path, list(case.args))
    seen = problems(logs)
    letters = case.dead(zoo_site.base)
    assert dead_letters(case.spider, redis_url) == letters, seen
    hung = f"(None: still running after {NODE_TIMEOUT}s)"
    code = 3 if letters else 0  # CRAWLER_DEAD_LETTER_EXIT_CODE
    assert codes == [code, code], f"exit codes {codes} {hung}\n{seen}"
    for log in logs:
        assert "Spider closed (finished)" in log, seen
    counts = zoo_site.counts()
    expected = case.fetched(zoo_site.base)
    wrong = {p: (counts.get(p, 0), n) for p, n in expected.items() if counts.get(p, 0) != n}
    extra = {p: n for p, n in counts.items() if p not in expected}
    assert not wrong and not extra, f"(fetched, expected): {wrong}; not expected: {extra}\n{seen}"
    items = export(case.spider, redis_url, tmp_path)
    case.check_items(zoo_site.base, items)
    if case.seed_key:
        assert redis_server.client().llen(case.seed_key) == 0


def test_close_spider_raised_on_one_node_closes_the_whole_crawl(
    zoo_site: ZooServer, redis_url: str, tmp_path: Path
) -> None:
    """Scrapy's CloseSpider example: one node's callback raises it, and the
    crawl closes as one Scrapy process would: the other node stops too (it
    crawled on to the end of the site, exiting 'finished'), each with the
    spider's reason; what is left stays queued. Nodes started again begin a
    new run and finish it."""
    settings = ("CONCURRENT_REQUESTS=2", "CRAWLER_LEASE_RENEW_INTERVAL=0.5")

    def run(tag: str) -> list[str]:
        logs = [tmp_path / f"{tag}{i}.log" for i in range(2)]
        nodes = [start_node("bandwidth", redis_url, log, *settings, cwd=ZOO) for log in logs]
        codes = wait_nodes(nodes, NODE_TIMEOUT)
        texts = [log.read_text() if log.exists() else "" for log in logs]
        assert codes == [0, 0], f"exit codes {codes}\n{problems(texts)}"
        return texts

    def status() -> dict[str, Any]:
        result = run_scrapy(["status", "bandwidth", "--json"], redis_url, cwd=ZOO)
        assert result.returncode == 0, result.stderr[-3000:]
        return dict(json.loads(result.stdout))

    def queued() -> int:
        return int(status()["queued"])

    texts = run("closed")
    for text in texts:
        assert "Spider closed (bandwidth_exceeded)" in text, problems(texts)
    fetched = [p for p in zoo_site.counts() if p.startswith("/bandwidth/")]
    assert f"/bandwidth/{BANDWIDTH_PAGE}.html" in fetched
    print(f"closed after {len(fetched)} of {BANDWIDTH_PAGES} pages; {queued()} queued")
    assert len(fetched) < BANDWIDTH_PAGES // 2
    assert queued() > 0
    # scrapy status says why the crawl stopped with work queued.
    assert status()["closed_by"] == "bandwidth_exceeded"
    table = run_scrapy(["status", "bandwidth"], redis_url, cwd=ZOO).stdout
    assert "CLOSED      by a spider's CloseSpider('bandwidth_exceeded')" in table, table
    # Over, as a Scrapy process would be: listed as closed, not as stopped
    # with work left, and a follower exits (it waited for good before).
    crawls = run_scrapy(["crawls", "--json"], redis_url, cwd=ZOO)
    assert [c["state"] for c in json.loads(crawls.stdout)] == ["closed"], crawls.stdout
    out = tmp_path / "followed.jsonl"
    followed = run_scrapy(["export", "bandwidth", "-o", str(out), "--follow"], redis_url, cwd=ZOO)
    assert followed.returncode == 0, followed.stderr[-3000:]
    assert "closed by a spider's CloseSpider" in followed.stderr, followed.stderr[-3000:]
    plain = tmp_path / "plain.jsonl"
    assert run_scrapy(["export", "bandwidth", "-o", str(plain)], redis_url, cwd=ZOO).returncode == 0
    assert 0 < len(read_jsonl(out)) == len(read_jsonl(plain))

    zoo_site.site.exceeded = False  # the page no longer says so
    texts = run("again")
    for text in texts:
        assert "Spider closed (finished)" in text, problems(texts)
    counts = zoo_site.counts()
    assert {n for p, n in counts.items() if p.startswith("/bandwidth/")} == {1}
    assert len([p for p in counts if p.startswith("/bandwidth/")]) > len(fetched)
    assert queued() == 0
    assert status()["closed_by"] is None


def test_close_spider_reaches_the_other_nodes_within_a_second(
    zoo_site: ZooServer, redis_url: str, tmp_path: Path
) -> None:
    """With the default heartbeat (CRAWLER_LEASE_RENEW_INTERVAL = 10 s) the
    other node learnt of a CloseSpider only at its next heartbeat: it
    crawled on for up to 10 s, here to the end of the site, and exited
    'finished' (helper 49). It closes within a second, with the reason."""
    logs = [tmp_path / f"n{i}.log" for i in range(2)]
    nodes = [
        start_node("bandwidth", redis_url, log, "CONCURRENT_REQUESTS=2", cwd=ZOO) for log in logs
    ]
    codes = wait_nodes(nodes, NODE_TIMEOUT)
    texts = [log.read_text() if log.exists() else "" for log in logs]
    assert codes == [0, 0], f"exit codes {codes}\n{problems(texts)}"
    for text in texts:
        assert "Spider closed (bandwidth_exceeded)" in text, problems(texts)
    fetched = [p for p in zoo_site.counts() if p.startswith("/bandwidth/")]
    print(f"closed after {len(fetched)} of {BANDWIDTH_PAGES} pages (default heartbeat)")
    assert len(fetched) < BANDWIDTH_PAGES // 2


def exported_twice(spider: str, redis_server: RedisServer, tmp_path: Path) -> list[int]:
    """How many items *spider* exports after a crawl on two nodes, and after
    its pages are processed again with its items kept (as after a node was
    killed once its callbacks ran: their items must keep their ids)."""
    counts = []
    for run in ("first", "again"):
        if run == "again":
            client = redis_server.client()
            for key in client.scan_iter(f"{{{spider}}}:*"):
                if key != f"{{{spider}}}:items".encode():
                    client.delete(key)
        (tmp_path / run).mkdir()
        codes, logs = crawl_two_nodes(spider, redis_server.url, tmp_path / run, [])
        assert codes == [0, 0], problems(logs)
        assert not [log for log in logs if "without its origin" in log], problems(logs)
        counts.append(len(export(spider, redis_server.url, tmp_path / run)))
    return counts


def test_an_item_object_yielded_once_per_row_keeps_stable_ids(
    zoo_site: ZooServer, redis_server: RedisServer, redis_url: str, tmp_path: Path
) -> None:
    """The same item object yielded again while the store had not taken it
    yet: its later yields got random ids (with a warning blaming a
    pipeline), so processing the pages again (a node killed after its
    callbacks ran) stored them twice. The pages are crawled again here with
    the items kept: the export is the same (19 items; 28 before)."""
    rows = sum(1 for i in range(TREE_PAGES) for k in (1, 2) if 2 * i + k < TREE_PAGES)
    assert exported_twice("rows", redis_server, tmp_path) == [rows, rows]


def test_dont_filter_requests_in_varying_order_keep_their_items_ids(
    zoo_site: ZooServer, redis_server: RedisServer, redis_url: str, tmp_path: Path
) -> None:
    """dont_filter requests a callback yields from a set of URLs, in another
    order in each process: their items keep their ids when the page is
    processed again (an id from the request's position among all the
    callback's dont_filter requests would not: each page's item stored
    twice)."""
    assert exported_twice("recheck", redis_server, tmp_path) == [19, 19]


def test_dont_filter_requests_to_one_url_in_varying_order_keep_their_items_ids(
    zoo_site: ZooServer, redis_server: RedisServer, redis_url: str, tmp_path: Path
) -> None:
    """dont_filter requests to one URL (one fingerprint) that differ by
    cb_kwargs, yielded from a set, in another order in each process: their
    items keep their ids when the page is processed again (a position among
    the requests with their fingerprint would not: 38 items)."""
    assert exported_twice("retag", redis_server, tmp_path) == [19, 19]


def test_a_start_that_raises_is_logged_once_and_its_output_kept(
    zoo_site: ZooServer, redis_url: str, tmp_path: Path
) -> None:
    """start() raising: as in plain Scrapy, its error is logged, what it
    yielded is crawled and kept, and the nodes close with 'start_error'. The
    framework's spider_error handler took the signal's response for a
    callback's and raised on it (None here): a second traceback, 'Error
    caught on signal handler', in each node's log."""
    codes, logs = crawl_two_nodes("start_error", redis_url, tmp_path, [])
    assert codes == [0, 0], problems(logs)
    for log in logs:
        assert "Spider closed (start_error)" in log, problems(logs)
        assert "Error caught on signal handler" not in log, problems(logs)
    assert zoo_site.counts().get("/tree/0.html") == 1
    items = export("start_error", redis_url, tmp_path)
    expected = [{"from": "start()"}, {"url": zoo_site.url("/tree/0.html")}]
    assert canonical(items) == canonical(expected)
