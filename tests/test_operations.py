"""Operating a fleet: status, cluster stats, metrics, pause/resume, reset,
and two crawls sharing one Redis."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT, SCRAPY, free_port, read_jsonl, run_scrapy, scrapy_env, start_node
from tests.test_faults import finish, wait_for

FAST_LEASES = ("CRAWLER_LEASE_TIME=3", "CRAWLER_LEASE_RENEW_INTERVAL=1")


def status(redis_url: str, *args: str) -> dict:
    result = run_scrapy(["status", *args, "--json"], redis_url)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_status_matches_what_the_server_and_export_saw(make_site, redis_url, tmp_path):
    site = make_site(2000)
    assert run_scrapy(["seed", "site", site.url("/page/0.html")], redis_url).returncode == 0
    nodes = [start_node("site", redis_url, tmp_path / f"n{i}.log", *FAST_LEASES) for i in range(3)]
    wait_for(lambda: len(site.page_counts()) > 300, 60, "crawl progress")
    wait_for(lambda: status(redis_url, "site")["live_nodes"] == 3, 10, "3 live nodes")
    during = status(redis_url, "site")
    assert during["done"] <= 2000 and during["seen"] >= during["done"]
    table = run_scrapy(["status", "site"], redis_url).stdout
    assert "crawl 'site' on redis://127.0.0.1" in table and "3 live" in table
    print(table)
    assert finish(nodes) == [0, 0, 0]

    after = status(redis_url, "site")
    out = tmp_path / "items.jsonl"
    assert run_scrapy(["export", "site", "-o", str(out)], redis_url).returncode == 0
    fetched = sum(site.page_counts().values())
    assert after["done"] == fetched == 2000
    assert after["items"] == len(read_jsonl(out)) == 2000
    assert (after["queued"], after["in_flight"], after["live_nodes"]) == (0, 0, 0)
    assert sorted(n["state"] for n in after["nodes"]) == ["left", "left", "left"]
    assert sum(n["pages"] for n in after["nodes"]) == 2000

    stats = status(redis_url, "site", "--stats")
    assert stats["item_scraped_count"] == 2000
    assert stats["response_received_count"] >= 2000  # plus each node's robots.txt
    assert stats["crawler/acked"] == 2000


# Asserts how soon after the kill status shows the node lost, polling with
# `scrapy status` (a second or two each on a busy machine: 6.2 s measured
# beside three other tests against 6): run alone (README).
@pytest.mark.timing
def test_killed_node_shows_as_lost(make_site, redis_url, tmp_path):
    make_site(1)
    node = start_node(
        "site", redis_url, tmp_path / "k.log", "CRAWLER_KEEP_ALIVE=True", *FAST_LEASES
    )
    try:
        wait_for(lambda: status(redis_url, "site")["live_nodes"] == 1, 30, "the node to join")
        os.kill(node.pid, signal.SIGKILL)
        killed = time.monotonic()
        wait_for(
            lambda: [n["state"] for n in status(redis_url, "site")["nodes"]] == ["lost"],
            10,
            "the node to show as lost",
        )
        assert time.monotonic() - killed <= 3 + 1 + 2  # lease + one renew interval + slack
        table = run_scrapy(["status", "site"], redis_url).stdout
        assert "LOST (" in table and "0 live" in table
    finally:
        node.kill()
        node.wait()


def test_pause_stops_fetching_and_resume_continues(make_site, redis_url, tmp_path):
    site = make_site(3000)
    assert run_scrapy(["seed", "site", site.url("/page/0.html")], redis_url).returncode == 0
    nodes = [start_node("site", redis_url, tmp_path / f"n{i}.log", *FAST_LEASES) for i in range(2)]
    wait_for(lambda: len(site.page_counts()) > 400, 60, "crawl progress")
    assert "paused" in run_scrapy(["pause", "site"], redis_url).stdout
    time.sleep(2)  # requests already being fetched finish
    before = sum(site.page_counts().values())
    time.sleep(4)
    assert sum(site.page_counts().values()) == before, "nodes kept fetching while paused"
    assert all(n.poll() is None for n in nodes), "nodes must stay up while paused"
    snap = status(redis_url, "site")
    assert snap["paused"] and snap["queued"] > 0
    # No time to drain while nothing is fetched (helper 40: ~1m42s shown).
    assert snap["pages_per_min"] > 0 and snap["eta_seconds"] is None
    assert "resumed" in run_scrapy(["resume", "site"], redis_url).stdout
    assert finish(nodes) == [0, 0]
    counts = site.page_counts()
    assert len(counts) == 3000 and set(counts.values()) == {1}


def test_two_spiders_crawl_at_once_in_one_redis(make_site, redis_url, rclient, tmp_path):
    site = make_site(500)
    assert run_scrapy(["seed", "site", site.url("/page/0.html")], redis_url).returncode == 0
    assert run_scrapy(["seed", "products", site.url("/shop/")], redis_url).returncode == 0
    nodes = [start_node("site", redis_url, tmp_path / f"s{i}.log") for i in range(2)]
    nodes += [start_node("products", redis_url, tmp_path / f"p{i}.log") for i in range(2)]
    assert finish(nodes) == [0, 0, 0, 0]
    counts = site.counts()
    assert len([p for p in counts if p.startswith("/page/")]) == 500
    assert len([p for p in counts if p.startswith("/shop/product/")]) == 200
    assert set(counts.values()) == {1} or all(
        n == 1 for p, n in counts.items() if p != "/robots.txt"
    )
    listing = run_scrapy(["status", "--json"], redis_url)
    crawls = {c["crawl"]: c for c in json.loads(listing.stdout)}
    assert crawls["site"]["items"] == 500 and crawls["products"]["items"] == 200
    for key in rclient.scan_iter():
        name = key.decode()
        assert name.startswith(("{site}:", "{products}:", "crawler:crawls")), name


def test_metrics_endpoint_serves_prometheus_text(make_site, redis_url, tmp_path):
    site = make_site(50)
    assert run_scrapy(["seed", "site", site.url("/page/0.html")], redis_url).returncode == 0
    port = free_port()
    node = start_node(
        "site",
        redis_url,
        tmp_path / "m.log",
        "CRAWLER_KEEP_ALIVE=True",
        f"CRAWLER_METRICS_PORT={port}",
    )
    try:
        wait_for(lambda: len(site.page_counts()) == 50, 60, "the crawl")
        time.sleep(0.5)
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    finally:
        node.terminate()
        node.wait(timeout=60)
    # No authentication, so loopback unless told otherwise (issue 12).
    assert (
        f"Serving Prometheus metrics on http://127.0.0.1:{port}/metrics"
        in (tmp_path / "m.log").read_text()
    )
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in (
        "crawler_pages",
        "crawler_items",
        "crawler_errors",
        "crawler_in_flight",
        "crawler_frontier_queued",
    ):
        assert name in families, (name, sorted(families))
    (pages,) = [s for s in families["crawler_pages"].samples if s.name == "crawler_pages_total"]
    assert pages.labels == {"crawl": "site"} and pages.value >= 50
    (items,) = [s for s in families["crawler_items"].samples if s.name == "crawler_items_total"]
    assert items.value == 50


def test_a_taken_metrics_port_stops_the_node_with_a_clear_message(make_site, redis_url):
    """Two nodes on one machine given the same CRAWLER_METRICS_PORT: the
    second says so and exits 1 before it leases anything (it used to crawl
    on without its endpoint, a traceback in its log)."""
    site = make_site(5)
    assert run_scrapy(["seed", "site", site.url("/page/0.html")], redis_url).returncode == 0
    with socket.create_server(("127.0.0.1", 0)) as other:
        port = other.getsockname()[1]
        result = run_scrapy(["crawl", "site", "-s", f"CRAWLER_METRICS_PORT={port}"], redis_url)
    assert result.returncode == 1, result.stderr
    assert f"CRAWLER_METRICS_PORT={port}: cannot serve metrics on 127.0.0.1:{port}" in result.stderr
    assert "give each node its own port" in result.stderr
    assert "Traceback" not in result.stderr
    assert site.page_counts() == {}


def test_reset_asks_then_deletes_the_crawl(make_site, redis_url, rclient, tmp_path):
    # A page that takes long enough that the node is surely still running
    # when `reset` looks (with 3 s, it could finish between the two calls).
    site = make_site(20, delays={"/page/1.html": 10.0})
    assert run_scrapy(["seed", "site", site.url("/page/0.html")], redis_url).returncode == 0
    node = start_node("site", redis_url, tmp_path / "r.log")
    # Not under a running node: its next commits wrote into the deleted
    # crawl (queued -7, a crawl export --follow waited on for good; helper 40).
    wait_for(lambda: status(redis_url, "site")["in_flight"] > 0, 60, "a page in flight")
    busy = run_scrapy(["reset", "site", "--yes"], redis_url)
    assert busy.returncode == 1, busy.stderr
    assert "1 nodes are running on crawl 'site': nothing deleted" in busy.stderr
    assert node.wait(timeout=120) == 0
    refused = run_scrapy(["reset", "site"], redis_url, input="")
    assert refused.returncode == 1 and "not confirmed; nothing deleted" in refused.stderr
    assert "This deletes crawl 'site': 0 queued, 20 seen, 20 items" in refused.stderr
    assert rclient.exists("{site}:items")
    # Seeds pushed the scrapy-redis way for the next run are kept: the
    # README's stand-in for SCHEDULER_FLUSH_ON_START, which keeps them (they
    # were deleted, and the next crawl fetched nothing; helper 38).
    rclient.lpush("site:start_urls", site.url("/page/1.html"))
    done = run_scrapy(["reset", "site", "--yes"], redis_url)
    assert done.returncode == 0 and "reset crawl 'site'" in done.stdout
    assert "1 start URLs waiting in site:start_urls are kept" in done.stderr
    assert [k for k in rclient.scan_iter() if k.startswith(b"{site}")] == []
    assert rclient.llen("site:start_urls") == 1
    again = run_scrapy(["seed", "site", site.url("/page/0.html")], redis_url)
    assert "1 queued, 0 already seen" in again.stdout
    everything = run_scrapy(["reset", "site", "--yes", "--start-urls"], redis_url)
    assert "1 start URLs waiting in site:start_urls are deleted too" in everything.stderr
    assert not rclient.exists("site:start_urls")


def test_scrapys_page_commands_run_as_plain_scrapy(make_site, redis_url, rclient, tmp_path):
    """Scrapy's shell, fetch, parse and check look at one page on this
    machine. With the add-on they joined the spider's crawl as a node, their
    requests (a callback of the command's own, a SequenceExclude in meta)
    were dead-lettered, and shell hung, fetch printed nothing with exit 0,
    parse crawled the whole frontier and printed no item, check reported
    "0 contracts, OK" (helper 37). They run as plain Scrapy now, and
    leave Redis alone; so does a crawl with the add-on set to None."""
    site = make_site(10)
    url = site.url("/page/1.html")
    assert run_scrapy(["seed", "site", site.url("/page/0.html")], redis_url).returncode == 0
    before = sorted(rclient.keys("*"))

    fetched = run_scrapy(["fetch", "--nolog", url], redis_url, timeout=60)
    assert fetched.returncode == 0, fetched.stderr
    assert "<title>" in fetched.stdout

    shell = run_scrapy(["shell", url, "--nolog", "-c", "response.status"], redis_url, timeout=60)
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.strip() == "200"

    parsed = run_scrapy(["parse", url, "--spider", "site", "-c", "parse", "--nolog"], redis_url)
    assert parsed.returncode == 0, parsed.stderr
    scraped = parsed.stdout.split("# Scraped Items", 1)[1].split("# Requests")[0]
    assert "'title': 'Page 1'" in scraped and f"'url': '{url}'" in scraped, parsed.stdout

    checked = run_scrapy(["check", "site"], redis_url, timeout=60)
    assert checked.returncode == 0, checked.stderr
    assert "Ran 0 contracts" in checked.stderr

    off = '{"crawler.addon.DistributedCrawl": null}'
    plain = run_scrapy(
        ["crawl", "site", "-a", f"start_url={url}", "-s", f"ADDONS={off}", "-s", "DEPTH_LIMIT=1"],
        "redis://127.0.0.1:1/0",  # never used
        timeout=60,
    )
    assert plain.returncode == 0, plain.stderr[-2000:]
    assert "'item_scraped_count': 6" in plain.stderr  # page 1 and its 5 links

    assert sorted(rclient.keys("*")) == before
    assert site.counts()["/page/1.html"] == 4


def test_page_commands_run_plain_when_a_spider_enables_the_addon(
    make_site, redis_url, rclient, tmp_path
):
    """A spider may enable the add-on in its ``custom_settings`` (Scrapy's
    ADDONS at spider priority), which replaces the project's whole ADDONS
    dict, the add-on the commands had turned off included: ``parse``
    printed no item and ``check`` "Ran 0 contracts, OK", both having joined
    the crawl and left a dead letter in it (helper 49)."""
    site = make_site(10)
    url = site.url("/page/1.html")
    project = tmp_path / "proj"
    spiders = project / "proj" / "spiders"
    spiders.mkdir(parents=True)
    (project / "scrapy.cfg").write_text("[settings]\ndefault = proj.settings\n")
    (project / "proj" / "__init__.py").write_text("")
    (spiders / "__init__.py").write_text("")
    (project / "proj" / "settings.py").write_text(
        'BOT_NAME = "proj"\nSPIDER_MODULES = ["proj.spiders"]\n'
        'COMMANDS_MODULE = "crawler.commands"\nADDONS = {}\n'
    )
    (spiders / "pages.py").write_text(
        "import scrapy\n\n\n"
        "class PagesSpider(scrapy.Spider):\n"
        '    name = "pages"\n'
        '    custom_settings = {"ADDONS": {"crawler.addon.DistributedCrawl": 0}}\n\n'
        "    def parse(self, response):\n"
        f'        """@url {url}\n'
        "        @returns items 1 1\n"
        "        @returns requests 1\n"
        '        @scrapes title url\n        """\n'
        '        yield {"title": response.css("title::text").get(), "url": response.url}\n'
        '        yield from response.follow_all(css="a", callback=self.parse)\n'
    )
    parsed = run_scrapy(["parse", url, "--spider", "pages", "-c", "parse"], redis_url, cwd=project)
    assert parsed.returncode == 0, parsed.stderr[-3000:]
    scraped = parsed.stdout.split("# Scraped Items", 1)[1].split("# Requests")[0]
    assert "'title': 'Page 1'" in scraped, parsed.stdout
    checked = run_scrapy(["check", "pages"], redis_url, cwd=project, timeout=60)
    assert checked.returncode == 0, checked.stderr[-3000:]
    assert "Ran 3 contracts" in checked.stderr, checked.stderr[-3000:]
    assert rclient.keys("*") == []


def test_a_spiders_own_addons_without_the_framework_are_refused(
    make_site, redis_url, rclient, tmp_path
):
    """Scrapy replaces a dict setting as a whole: a spider enabling another
    add-on in its ``custom_settings`` ADDONS dropped the project's add-on,
    and ``scrapy crawl`` ran it as plain Scrapy, each node crawling
    everything, exit 0, Redis untouched (helper 49). It is refused with the
    way out; naming the add-on there (None: plain on purpose) is honoured."""
    site = make_site(5)
    project = tmp_path / "proj"
    spiders = project / "proj" / "spiders"
    spiders.mkdir(parents=True)
    (project / "scrapy.cfg").write_text("[settings]\ndefault = proj.settings\n")
    (project / "proj" / "__init__.py").write_text("class NoopAddon:\n    pass\n")
    (spiders / "__init__.py").write_text("")
    (project / "proj" / "settings.py").write_text(
        'BOT_NAME = "proj"\nSPIDER_MODULES = ["proj.spiders"]\n'
        'COMMANDS_MODULE = "crawler.commands"\n'
        'ADDONS = {"crawler.addon.DistributedCrawl": 0}\n'
    )
    spider = (
        "import scrapy\n\n\n"
        "class PagesSpider(scrapy.Spider):\n"
        '    name = "pages"\n'
        f"    start_urls = [{site.url('/page/0.html')!r}]\n"
        '    custom_settings = {"ADDONS": ADDONS}\n\n'
        "    def parse(self, response):\n"
        '        yield {"url": response.url}\n'
    )
    (spiders / "pages.py").write_text(spider.replace("ADDONS}", '{"proj.NoopAddon": 10}}'))
    refused = run_scrapy(["crawl", "pages"], redis_url, cwd=project)
    assert refused.returncode == 1, refused.stderr[-3000:]
    assert "error: spider 'pages' sets ADDONS in its custom_settings without" in refused.stderr
    assert rclient.keys("*") == [] and site.page_counts() == {}

    on_purpose = '{"proj.NoopAddon": 10, "crawler.addon.DistributedCrawl": None}}'
    (spiders / "pages.py").write_text(spider.replace("ADDONS}", on_purpose))
    plain = run_scrapy(["crawl", "pages"], redis_url, cwd=project)
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert "'item_scraped_count': 1," in plain.stderr
    assert rclient.keys("*") == []


def test_a_crawl_run_again_says_why_it_fetches_nothing(make_site, redis_url, tmp_path):
    """Run again as plain Scrapy runs a spider, a finished crawl fetches
    nothing (its start URLs are in its seen-set) and a -O feed is written
    empty: it exited 0 with only a stat to show for it (helper 37). The node
    says so, with the way to crawl it afresh."""
    site = make_site(5)
    args = [f"start_url={site.url('/page/0.html')}"]
    first = start_node("site", redis_url, tmp_path / "first.log", spider_args=args)
    assert first.wait(timeout=120) == 0
    assert "fetched nothing" not in (tmp_path / "first.log").read_text()
    again = start_node("site", redis_url, tmp_path / "again.log", spider_args=args)
    assert again.wait(timeout=120) == 0
    log = (tmp_path / "again.log").read_text()
    assert "This node fetched nothing: its start requests were in crawl 'site'" in log
    assert "`scrapy reset site`" in log


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("CRAWLER_PARTITIONS=100000", "CRAWLER_PARTITIONS=100000 is more than 1024"),
        ("CRAWLER_PARTITIONS=abc", "CRAWLER_PARTITIONS='abc' is not a number"),
        ("CRAWLER_LEASE_TIME=nan", "CRAWLER_LEASE_TIME='nan' is not a finite number"),
    ],
)
def test_a_bad_setting_is_an_error_line_for_every_command(setting, message, redis_url):
    """`scrapy crawl` said `error: ...`; status, seed and export printed a
    traceback (the settings were first checked where Scrapy builds the
    extensions). CRAWLER_PARTITIONS=100000 made a crawl every `scrapy
    crawls` read for 51 s, and `scrapy reset` ran out of memory (helper 40)."""
    for command in (["status", "site"], ["seed", "site", "http://127.0.0.1:1/"], ["crawl", "site"]):
        result = run_scrapy([*command, "-s", setting], redis_url)
        assert result.returncode == 1, (command, result.stderr[-2000:])
        assert f"error: {message}" in result.stderr, (command, result.stderr[-2000:])
        assert "Traceback" not in result.stderr, (command, result.stderr[-2000:])


def test_output_piped_into_head_ends_quietly(redis_url, rclient):
    """`scrapy deadletters SPIDER --json | head` ended in a BrokenPipeError
    traceback (helper 40)."""
    from crawler.frontier import dead_letter

    letters = [dead_letter("HTTP 500", "", "n1", f"http://x.test/{i}") for i in range(5000)]
    rclient.rpush("{site}:dead", *letters)
    command = f"'{SCRAPY}' deadletters site --json | head -1"
    result = subprocess.run(
        ["bash", "-c", command], cwd=ROOT, env=scrapy_env(redis_url), capture_output=True, text=True
    )
    assert json.loads(result.stdout)["reason"] == "HTTP 500"
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr
