"""scrapy-redis's own example project, and scrapy-redis settings and seeds,
under the framework: two real ``scrapy crawl`` nodes each, seeded with the
real ``redis-cli``, pages counted by the server.

The project in ``tests/scrapy_redis_project`` is scrapy-redis's
``example-project`` (see its NOTICE.md); each test crawls a copy whose
``settings.py`` got the README's "Coming from scrapy-redis" diff.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from scrapy import Spider
from scrapy.settings import Settings

from crawler.connection import with_redis_params
from crawler.demosite import QuietServer
from crawler.frontier import Frontier
from crawler.keys import make_keys
from crawler.localredis import socket_path
from crawler.scrapy_redis_settings import report
from tests.conftest import (
    ANY_TELNET_PORT,
    REDIS_CLI,
    ROOT,
    SCRAPY,
    RedisServer,
    assert_any_telnet_port,
    read_jsonl,
    run_scrapy,
    scrapy_env,
)

PROJECT = ROOT / "tests" / "scrapy_redis_project"
README = ROOT / "README.md"

# The site: a directory in dmoz's markup (what the dmoz spider's rules and
# selectors expect) whose entries link to local "site" pages.
CATS = 2
DIRECTORY = ["/", *(p for i in range(CATS) for p in (f"/cat/{i}/", f"/cat/{i}/sub/"))]
SITES = [f"/site/{i}-{j}.html" for i in range(CATS) for j in range(3)]


def _entry(name: str) -> str:
    return (
        f'<div class="title-and-desc"><a href="/site/{name}.html">'
        f'<div class="site-title">Site {name}</div></a>'
        f'<div class="site-descr"> About {name} </div></div>'
    )


def _body(path: str) -> str | None:
    if path == "/":
        links = "".join(f'<a href="/cat/{i}/">Cat {i}</a>' for i in range(CATS))
        return f'<div class="top-cat">{links}</div>'
    m = re.fullmatch(r"/cat/(\d+)/(sub/)?", path)
    if m and int(m[1]) < CATS:
        i = m[1]
        if m[2]:
            return f'<div class="cat-item"><a href="/cat/{i}/">Up</a></div>{_entry(f"{i}-2")}'
        return f'<div class="sub-cat"><a href="/cat/{i}/sub/">Sub</a></div>' + "".join(
            _entry(f"{i}-{j}") for j in range(2)
        )
    if path in SITES:
        return f"<p>{path}</p>"
    return None


class Site:
    """The site on a free loopback port, counting requests per path and query."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        lock = threading.Lock()
        counts = self.counts

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with lock:
                    counts[self.path] += 1
                body = _body(self.path.split("?", 1)[0])
                title = self.path if body is not None else "Not found"
                html = f"<html><head><title>{title}</title></head><body>{body}</body></html>"
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write(html.encode())

            def log_message(self, *args: object) -> None:
                pass

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path


@pytest.fixture
def site() -> Iterator[Site]:
    served = Site()
    yield served
    served.server.shutdown()
    served.server.server_close()


def readme_diff() -> list[str]:
    """The settings diff of the README's "Coming from scrapy-redis"."""
    text = README.read_text()
    section = text[text.index("## Coming from scrapy-redis") :]
    block = section[section.index("```diff\n") + 8 :]
    return block[: block.index("```")].splitlines()


def project(tmp_path: Path, diff: list[str] | None = None) -> Path:
    """A copy of the example project, its settings.py changed by *diff*
    (default: the README's)."""
    copy = tmp_path / "project"
    shutil.copytree(PROJECT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    settings = copy / "example" / "settings.py"
    lines = settings.read_text().splitlines()
    for line in readme_diff() if diff is None else diff:
        if line.startswith("-"):
            lines.remove(line[1:])  # raises if the README removes a line upstream lacks
        elif line.startswith("+"):
            lines.append(line[1:])
    settings.write_text("\n".join(lines) + "\n")
    return copy


def redis_cli(server: RedisServer, *args: str) -> None:
    subprocess.run([REDIS_CLI, "-p", str(server.port), *args], check=True, capture_output=True)


def crawl(
    spider: str,
    redis_url: str,
    cwd: Path,
    tmp_path: Path,
    *settings: str,
    args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> tuple[list[int], list[str]]:
    """Two nodes to the end; their exit codes and logs."""
    logs = [tmp_path / f"{spider}-node{n}.log" for n in (1, 2)]
    command = [SCRAPY, "crawl", spider, "-s", "LOG_LEVEL=INFO", "-s", "CRAWLER_FINISH_GRACE=1"]
    command += ANY_TELNET_PORT  # the two nodes start together
    for arg in args:
        command += ["-a", arg]
    for setting in settings:
        command += ["-s", setting]
    nodes = [
        subprocess.Popen(
            [*command, "-s", f"LOG_FILE={log}"],
            cwd=cwd,
            env=scrapy_env(redis_url, **(env or {})),
        )
        for log in logs
    ]
    codes = [node.wait(timeout=180) for node in nodes]
    texts = [log.read_text() for log in logs]
    for text in texts:
        assert_any_telnet_port(text)
    return codes, texts


def export(spider: str, redis_url: str, cwd: Path, tmp_path: Path) -> list[dict[str, object]]:
    out = tmp_path / f"{spider}.jsonl"
    result = run_scrapy(["export", spider, "-o", str(out)], redis_url, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return read_jsonl(out)


def assert_finished(codes: list[int], logs: list[str], exit_code: int = 0) -> None:
    assert codes == [exit_code, exit_code], logs
    for log in logs:
        assert "Spider closed (finished)" in log, log[-3000:]
        assert "Traceback" not in log, log
        assert "localhost:6379" not in log and "Connection refused" not in log, log


def dead_reasons(client: redis.Redis, spider: str) -> list[str]:
    return [json.loads(d)["reason"] for d in client.lrange("{" + spider + "}:dead", 0, -1)]


def test_example_project_moves_by_the_readme_diff(
    site: Site, redis_server: RedisServer, rclient: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    """(a), (b): dmoz (CrawlSpider), myspider_redis (RedisSpider) and
    mycrawler_redis (RedisCrawlSpider) as scrapy-redis ships them, REDIS_URL
    only in the environment: every page once, every item exported, scrapy-redis's
    RedisPipeline writing to the same Redis."""
    cwd = project(tmp_path)
    assert "REDIS_URL" not in (cwd / "example" / "settings.py").read_text()

    codes, logs = crawl("dmoz", redis_url, cwd, tmp_path, env={"DMOZ_START_URL": site.url("/")})
    assert_finished(codes, logs)
    assert {p: site.counts[p] for p in DIRECTORY} == dict.fromkeys(DIRECTORY, 1)
    items = export("dmoz", redis_url, cwd, tmp_path)
    expected = {(f"Site {n}", f"About {n}", f"/site/{n}.html") for n in (s[6:-5] for s in SITES)}
    assert {(i["name"], i["description"], i["link"]) for i in items} == expected
    assert len(items) == len(SITES) and all(i["spider"] == "dmoz" for i in items)
    # scrapy-redis's RedisPipeline found the framework's Redis (env REDIS_URL).
    assert rclient.llen("dmoz:items") == len(SITES)

    # URLs, one twice, and the JSON seed of scrapy-redis's README (its extra
    # keys are form data: a query string on a GET).
    seeds = [site.url(p) for p in SITES] + [site.url(SITES[0])]
    readme_seed = {
        "url": site.url("/cat/0/"),
        "meta": {"job-id": "123xsd", "start-date": "dd/mm/yy"},
        "url_cookie_key": "fertxsas",
    }
    seeds.append(json.dumps(readme_seed))
    redis_cli(redis_server, "lpush", "myspider:start_urls", *seeds)
    codes, logs = crawl("myspider_redis", redis_url, cwd, tmp_path, args=("domain=127.0.0.1",))
    assert_finished(codes, logs)
    assert {p: site.counts[p] for p in SITES} == dict.fromkeys(SITES, 1)
    assert site.counts["/cat/0/?url_cookie_key=fertxsas"] == 1
    items = export("myspider_redis", redis_url, cwd, tmp_path)
    pages = [*SITES, "/cat/0/?url_cookie_key=fertxsas"]
    assert sorted(i["url"] for i in items) == sorted(site.url(p) for p in pages)
    assert rclient.llen("myspider_redis:items") == len(SITES) + 1
    assert rclient.exists("myspider:start_urls") == 0

    # Upstream's mycrawler_redis: as with plain scrapy-redis on Scrapy 2.19,
    # its seed is fetched and the links it follows are filtered as offsite
    # (its allowed_domains is a one-shot filter() that Scrapy's offsite
    # middleware reads twice, the second time empty). test_redis_crawl_spider
    # follows rules with allowed_domains as a list.
    site.counts.clear()
    redis_cli(redis_server, "lpush", "mycrawler:start_urls", site.url("/"))
    codes, logs = crawl("mycrawler_redis", redis_url, cwd, tmp_path, args=("domain=127.0.0.1",))
    assert_finished(codes, logs)
    assert dict(site.counts) == {"/": 1}
    filtered = [int(n) for log in logs for n in re.findall(r"'offsite/filtered': (\d+)", log)]
    assert sum(filtered) == CATS
    assert export("mycrawler_redis", redis_url, cwd, tmp_path) == []


def test_redis_crawl_spider_follows_its_rules(
    site: Site, redis_server: RedisServer, redis_url: str, tmp_path: Path
) -> None:
    """A RedisCrawlSpider (rules through CrawlSpider's private callbacks) from
    one ``redis-cli lpush`` seed: every page once, every item exported."""
    cwd = project(tmp_path)
    redis_cli(redis_server, "lpush", "follow_redis:start_urls", site.url("/"))
    codes, logs = crawl("follow_redis", redis_url, cwd, tmp_path, "DOWNLOAD_DELAY=0")
    assert_finished(codes, logs)
    every = DIRECTORY + SITES
    assert dict(site.counts) == dict.fromkeys(every, 1)
    items = export("follow_redis", redis_url, cwd, tmp_path)
    assert sorted(i["url"] for i in items) == sorted(site.url(p) for p in every if p != "/")


def test_start_urls_as_set(
    site: Site, redis_server: RedisServer, rclient: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    """(c) REDIS_START_URLS_AS_SET, seeded with ``redis-cli sadd``, in batches of 2."""
    cwd = project(tmp_path)
    redis_cli(redis_server, "sadd", "myspider:start_urls", *(site.url(p) for p in SITES))
    codes, logs = crawl(
        "myspider_redis",
        redis_url,
        cwd,
        tmp_path,
        "REDIS_START_URLS_AS_SET=True",
        "REDIS_START_URLS_BATCH_SIZE=2",
        "DOWNLOAD_DELAY=0",
        args=("domain=127.0.0.1",),
    )
    assert_finished(codes, logs)
    assert dict(site.counts) == dict.fromkeys(SITES, 1)
    assert len(export("myspider_redis", redis_url, cwd, tmp_path)) == len(SITES)
    assert rclient.exists("myspider:start_urls") == 0


def test_a_spiders_max_idle_time_waits_for_seeds_pushed_later(
    site: Site, redis_server: RedisServer, redis_url: str, tmp_path: Path
) -> None:
    """A RedisSpider's ``max_idle_time`` (here ``-a max_idle_time=10``)
    outranks MAX_IDLE_TIME_BEFORE_CLOSE, as in scrapy-redis: it was ignored,
    and a node waiting for seeds exited after 2 s without the ones pushed
    6 s after it started (helper 38)."""
    cwd = project(tmp_path)
    log = tmp_path / "idle.log"
    command = [SCRAPY, "crawl", "myspider_redis", "-a", "domain=127.0.0.1", *ANY_TELNET_PORT]
    command += ["-a", "max_idle_time=10", "-s", "DOWNLOAD_DELAY=0", "-s", f"LOG_FILE={log}"]
    node = subprocess.Popen(command, cwd=cwd, env=scrapy_env(redis_url))
    time.sleep(6)
    assert node.poll() is None, log.read_text()[-3000:]
    redis_cli(redis_server, "lpush", "myspider:start_urls", *(site.url(p) for p in SITES))
    assert node.wait(timeout=120) == 0
    assert dict(site.counts) == dict.fromkeys(SITES, 1)


def test_make_request_from_data_override_with_json_seeds(
    site: Site, redis_server: RedisServer, rclient: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    """(d) A spider's own make_request_from_data (a list of two requests per
    JSON seed, a callback with cb_kwargs); a repeated seed is fetched once.
    The spider's ``self.server`` (scrapy-redis's client) is the crawl's Redis."""
    cwd = project(tmp_path)
    jobs = [json.dumps({"id": n, "page": site.url(p)}) for n, p in enumerate(SITES[:3])]
    redis_cli(redis_server, "rpush", "override_redis:jobs", *jobs, jobs[0])
    codes, logs = crawl("override_redis", redis_url, cwd, tmp_path, "DOWNLOAD_DELAY=0")
    assert_finished(codes, logs)
    pages = [p + q for p in SITES[:3] for q in ("", "?about=1")]
    assert dict(site.counts) == dict.fromkeys(pages, 1)
    assert rclient.get("override_redis:parsed") == str(len(pages)).encode()
    items = export("override_redis", redis_url, cwd, tmp_path)
    assert sorted((i["job"], i["url"]) for i in items) == sorted(
        (n, site.url(p + q)) for n, p in enumerate(SITES[:3]) for q in ("", "?about=1")
    )


def test_bad_seed_lines_are_dead_lettered(
    site: Site, redis_server: RedisServer, rclient: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    """(e) Bad lines go to the dead letters with their reason; the good ones
    are crawled and the nodes finish (exit 3: the crawl holds dead letters)."""
    cwd = project(tmp_path)
    bad = ["not a url", '{"url": ', json.dumps({"meta": {}}), "ftp://127.0.0.1/x"]
    bad.append(json.dumps({"url": site.url(SITES[3]), "meta": {"proxy": "http://evil.test"}}))
    good = [site.url(p) for p in SITES[:2]]
    redis_cli(redis_server, "lpush", "myspider:start_urls", *good, *bad)
    codes, logs = crawl(
        "myspider_redis", redis_url, cwd, tmp_path, "DOWNLOAD_DELAY=0", args=("domain=127.0.0.1",)
    )
    assert_finished(codes, logs, exit_code=3)
    assert dict(site.counts) == dict.fromkeys(SITES[:2], 1)
    reasons = dead_reasons(rclient, "myspider_redis")
    assert len(reasons) == len(bad), reasons
    assert all(r.startswith("bad seed: ") for r in reasons)
    assert any("bad JSON" in r for r in reasons) and any("'url'" in r for r in reasons)
    assert any("unsupported scheme" in r for r in reasons)
    assert any("meta key 'proxy' changes how the request is sent" in r for r in reasons)

    # A make_request_from_data that fails is a dead letter too, not a crash.
    redis_cli(redis_server, "rpush", "override_redis:jobs", '{"id": 1}')
    codes, logs = crawl("override_redis", redis_url, cwd, tmp_path, "DOWNLOAD_DELAY=0")
    assert_finished(codes, logs, exit_code=3)
    assert dead_reasons(rclient, "override_redis") == [
        "bad seed: OverrideSpider.make_request_from_data raised KeyError: 'page'"
    ]


@pytest.mark.parametrize("persist", ["False", "True"])
def test_redis_stats_collector_keeps_the_exit_status(
    persist: str, site: Site, redis_server: RedisServer, redis_url: str, tmp_path: Path
) -> None:
    """scrapy-redis's RedisStatsCollector (kept, as the README says) deletes
    its values when the spider closes unless SCHEDULER_PERSIST, and int()s
    every value it reads: the nodes exited 0 over a dead letter, or 1 with a
    traceback on "finished" (helper 38). They exit 3, as with Scrapy's own."""
    cwd = project(tmp_path)
    redis_cli(redis_server, "lpush", "myspider:start_urls", site.url(SITES[0]), "not a url")
    codes, logs = crawl(
        "myspider_redis",
        redis_url,
        cwd,
        tmp_path,
        "DOWNLOAD_DELAY=0",
        "STATS_CLASS=scrapy_redis.stats.RedisStatsCollector",
        f"SCHEDULER_PERSIST={persist}",
        args=("domain=127.0.0.1",),
    )
    assert codes == [3, 3], logs
    assert dict(site.counts) == {SITES[0]: 1}


def test_leftover_scrapy_redis_settings_are_reported_once(
    site: Site, redis_server: RedisServer, redis_url: str, tmp_path: Path
) -> None:
    """(f) Upstream's settings left in place (scrapy-redis's SCHEDULER at
    project priority included) plus more of them: the crawl is unchanged and
    each node names every one once, with what replaces it."""
    cwd = project(tmp_path, diff=[line for line in readme_diff() if line.startswith("+")])
    leftovers = {
        "SCHEDULER_QUEUE_CLASS": "scrapy_redis.queue.SpiderStack",
        "SCHEDULER_SERIALIZER": "scrapy_redis.picklecompat",
        "SCHEDULER_IDLE_BEFORE_CLOSE": "10",
        "MAX_IDLE_TIME_BEFORE_CLOSE": "0",
        "REDIS_ITEMS_KEY": "%(spider)s:scraped",
        "REDIS_PARAMS": json.dumps({"socket_timeout": 20}),
    }
    redis_cli(redis_server, "lpush", "myspider:start_urls", *(site.url(p) for p in SITES))
    codes, logs = crawl(
        "myspider_redis",
        redis_url,
        cwd,
        tmp_path,
        "DOWNLOAD_DELAY=0",
        *(f"{k}={v}" for k, v in leftovers.items()),
        args=("domain=127.0.0.1",),
    )
    assert_finished(codes, logs)
    assert dict(site.counts) == dict.fromkeys(SITES, 1)
    assert redis_server.client().llen("myspider_redis:scraped") == len(SITES)
    names = [
        "SCHEDULER = scrapy_redis.scheduler.Scheduler",
        "DUPEFILTER_CLASS = scrapy_redis.dupefilter.RFPDupeFilter",
        "SCHEDULER_PERSIST",
        "scrapy_redis.pipelines.RedisPipeline",
        "MySpider (a scrapy-redis spider)",
        *leftovers,
    ]
    for log in logs:
        assert log.count("scrapy-redis settings under crawler.addon.DistributedCrawl") == 1
        block = log[log.index("scrapy-redis settings under") :]
        for name in names:
            assert f"\n  {name}: " in block, (name, block[:3000])
        assert "Using scheduler" not in log or "scrapy_redis" not in log


@pytest.mark.parametrize("kind", ["list", "set", "zset"])
def test_raw_seeds_of_a_dead_node_go_back_with_their_type(
    kind: str, redis_url: str, rclient: redis.Redis
) -> None:
    """A seed key read as a list, set or sorted set: what a node leased and
    died holding goes back into the key, sorted-set scores included; a
    REDIS_START_URLS_BATCH_SIZE of 2 caps each lease."""
    key = "myspider:start_urls"
    members = {f"http://127.0.0.1:1/{n}": float(n) for n in range(5)}
    if kind == "list":
        rclient.rpush(key, *members)
    elif kind == "set":
        rclient.sadd(key, *members)
    else:
        rclient.zadd(key, members)
    keys = make_keys("myspider_redis", 4, key, start_urls_batch=2)

    async def scenario() -> tuple[list[bytes], int]:
        dead = Frontier(aioredis.Redis.from_url(redis_url), keys, "dead")
        taken = [raw for _, raw in await dead.lease_raw(10, 1)]
        assert (await dead.state()).start_urls == len(members) - 2
        await asyncio.sleep(0.05)
        other = Frontier(aioredis.Redis.from_url(redis_url), keys, "other")
        requeued, lost = await other.reclaim_expired(max_deliveries=1)
        assert (requeued, lost) == (2, 0)
        return taken, (await other.state()).start_urls

    taken, waiting = asyncio.run(scenario())
    assert waiting == len(members)
    if kind == "zset":
        assert taken == [b"http://127.0.0.1:1/4", b"http://127.0.0.1:1/3"]  # highest first
        restored = rclient.zrange(key, 0, -1, withscores=True)
        assert {m.decode(): s for m, s in restored} == members
    elif kind == "set":
        assert {m.decode() for m in rclient.smembers(key)} == set(members)
    else:
        assert sorted(m.decode() for m in rclient.lrange(key, 0, -1)) == sorted(members)
    assert rclient.hlen("{myspider_redis}:held:dead") == 0


def test_settings_report_redacts_passwords_and_names_replacements(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings(
        {
            "SCHEDULER": "scrapy_redis.scheduler.Scheduler",
            "REDIS_URL": "redis://user:s3cret@db.example:6379/0",
            "REDIS_PARAMS": {"password": "s3cret", "socket_timeout": 5},
            "SCHEDULER_FLUSH_ON_START": True,
        }
    )
    with caplog.at_level(logging.INFO, logger="crawler.scrapy_redis"):
        report(settings, Spider("plain"), "scrapy_redis.scheduler.Scheduler")
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    text = record.getMessage()
    assert "s3cret" not in text and "redis://user:***@db.example:6379/0" in text
    assert "SCHEDULER_FLUSH_ON_START: not done" in text
    assert "REDIS_PARAMS: password applied to every connection; socket_timeout to" in text


def test_redis_params_password_and_db_reach_the_framework() -> None:
    """scrapy-redis's clients apply REDIS_PARAMS' password and db where the
    URL has none; so does the framework, so both use the same database."""
    settings = Settings({"REDIS_HOST": "db.example", "REDIS_PARAMS": {"password": "p@ss", "db": 3}})
    assert with_redis_params("redis://db.example:6379", settings) == (
        "redis://:p%40ss@db.example:6379/3"
    )
    # The URL's own password and db win, as in redis-py's from_url.
    assert with_redis_params("redis://:own@h/1", settings) == "redis://:own@h/1"
    assert with_redis_params("unix:///tmp/r.sock", settings) == "unix:///tmp/r.sock"


def test_private_local_redis_is_scrapy_redis_s_too(site: Site, tmp_path: Path) -> None:
    """No REDIS_URL anywhere: the nodes start (then join) the private local
    Redis, and scrapy-redis's components (the spider's ``self.server``,
    RedisPipeline) use it too, not localhost:6379."""
    cwd = project(tmp_path)
    sock = socket_path((cwd / ".crawler" / "redis").resolve())
    status = run_scrapy(["status", "override_redis"], None, cwd=cwd)  # starts the server
    assert status.returncode == 0, status.stderr
    local = redis.Redis(unix_socket_path=str(sock))
    try:
        local.rpush("override_redis:jobs", json.dumps({"id": 7, "page": site.url(SITES[0])}))
        codes, logs = crawl("override_redis", "", cwd, tmp_path, "DOWNLOAD_DELAY=0")
        assert_finished(codes, logs)
        assert dict(site.counts) == {SITES[0]: 1, SITES[0] + "?about=1": 1}
        assert local.get("override_redis:parsed") == b"2"
        assert local.llen("override_redis:items") == 2
    finally:
        local.shutdown(nosave=True)


def test_a_plain_spiders_raw_seeds_are_decoded_with_redis_encoding() -> None:
    """A latin-1 seed of a plain spider was decoded as UTF-8 with U+FFFD for
    what did not fit, and that URL fetched: ?q=é became ?q=%EF%BF%BD, the
    wrong page, in silence (helper 38). REDIS_ENCODING is honoured, as the
    settings report says; bytes it cannot decode are a bad seed."""
    from scrapy.utils.test import get_crawler

    from crawler.config import CrawlConfig
    from crawler.exceptions import BadSeed
    from crawler.scrapy_redis_compat import seed_requests
    from spiders.site import SiteSpider

    raw = b"http://127.0.0.1:8/p?q=\xe9"
    for settings, want in (({"REDIS_ENCODING": "latin-1"}, "?q=%C3%A9"), ({}, None)):
        crawler = get_crawler(SiteSpider, settings)
        spider = SiteSpider.from_crawler(crawler)
        config = CrawlConfig.from_settings(crawler.settings, "site")
        if want is None:
            with pytest.raises(BadSeed, match=r"cannot decode the seed as utf-8"):
                seed_requests(raw, spider, config)
        else:
            [request] = seed_requests(raw, spider, config)
            assert request.url.endswith(want), request.url


def test_scrapys_page_commands_take_no_seed_from_a_redis_spiders_key(
    site: Site, redis_server: RedisServer, rclient: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    """``scrapy parse``, ``fetch`` and ``check`` run without the add-on
    (test_operations), but a RedisSpider's own loop stayed on: once their
    page was done, its ``spider_idle`` popped the crawl's seeds from its
    ``redis_key`` (fetched there, their items thrown away: lost to the
    crawl) and waited for more for ever (helper 49). It is off, as on a
    crawl: the seeds stay for the nodes and each command ends with its page."""
    cwd = project(tmp_path)
    settings = cwd / "example" / "settings.py"  # a scrapy-redis project names its Redis
    settings.write_text(settings.read_text() + f"REDIS_URL = {redis_url!r}\n")
    # A RedisSpider with a contract (upstream's example spiders have none).
    (cwd / "example" / "spiders" / "checked_redis.py").write_text(
        "from scrapy_redis.spiders import RedisSpider\n\n\n"
        "class CheckedSpider(RedisSpider):\n"
        '    name = "checked_redis"\n'
        '    redis_key = "myspider:start_urls"\n\n'
        "    def parse(self, response):\n"
        f'        """@url {site.url(SITES[1])}\n'
        "        @returns items 1 1\n"
        '        @scrapes url\n        """\n'
        '        yield {"url": response.url}\n'
    )
    seeds = [site.url(p) for p in SITES[2:]]
    redis_cli(redis_server, "lpush", "myspider:start_urls", *seeds)
    url = site.url(SITES[0])
    for args in (
        ["parse", url, "--spider", "checked_redis", "-c", "parse"],
        ["fetch", "--nolog", "--spider", "checked_redis", url],
        ["check", "checked_redis"],
    ):
        result = run_scrapy(args, redis_url, cwd=cwd, timeout=40)
        assert result.returncode == 0, result.stderr[-3000:]
        assert rclient.llen("myspider:start_urls") == len(seeds), args
    assert dict(site.counts) == {SITES[0]: 2, SITES[1]: 1}
