"""``scrapy dashboard`` in a real browser (Debian's chromium through
chromium-driver) against a real 2-node crawl, shared by the module's tests:
the numbers match ``scrapy status --json``, the charts draw, pause, resume
and requeue work from the page, and actions need the token beyond loopback.

The crawl: a small site, three URLs on a closed port (dead letters after
their retries), two nodes kept alive; a second site is seeded while paused.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from crawler.timeseries import Sample
from tests.conftest import (
    SCRAPY,
    RedisServer,
    SiteServer,
    free_port,
    run_scrapy,
    scrapy_env,
    start_node,
)
from tests.test_faults import wait_for

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FAST = (
    "CRAWLER_KEEP_ALIVE=True",
    "CRAWLER_LEASE_TIME=3",
    "CRAWLER_LEASE_RENEW_INTERVAL=1",
    "CRAWLER_DASHBOARD_SAMPLE_INTERVAL=1",
    "CRAWLER_DASHBOARD_HISTORY_HOURS=0.002",  # 7.2 s: 7 samples
)
PAGES, LATER_PAGES, DEAD = 40, 30, 3
# Fields of `scrapy status --json` that hold still while the crawl is idle.
STEADY = ("queued", "in_flight", "seen", "done", "dead", "items", "dead_letters", "requeued")


@dataclass
class Crawl:
    url: str
    site: SiteServer
    later: SiteServer
    base: str  # the dashboard, bound to loopback


def status(url: str) -> dict[str, Any]:
    result = run_scrapy(["status", "site", "--json"], url)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def start_dashboard(url: str, *args: str) -> tuple[subprocess.Popen[str], int]:
    """A dashboard process and its port, once it answers."""
    port = free_port()
    proc = subprocess.Popen(
        [SCRAPY, "dashboard", "--port", str(port), *args],
        env=scrapy_env(url),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def up() -> bool:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/config", timeout=1)
            return True
        except OSError:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            return False

    wait_for(up, 30, "the dashboard to answer")
    return proc, port


def post(base: str, path: str, token: str | None) -> int:
    """Status code of an action request (with *token* in the header, if any)."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["X-Dashboard-Token"] = token
    request = urllib.request.Request(base + path, b"{}", headers, method="POST")
    try:
        return int(urllib.request.urlopen(request, timeout=10).status)
    except urllib.error.HTTPError as exc:
        return exc.code


def api_status(base: str) -> dict[str, Any]:
    """The crawl as the dashboard's API has it (the same snapshot as
    ``scrapy status --json``, without starting a process each time)."""
    with urllib.request.urlopen(base + "/api/crawls", timeout=10) as response:
        crawls = json.loads(response.read())["crawls"]
    # {} until a node lists the crawl in this Redis.
    return next((c for c in crawls if c["crawl"] == "site"), {})


def idle(base: str) -> bool:
    s = api_status(base)
    if not s:
        return False
    return s["queued"] == s["in_flight"] == 0 and s["dead_letters"] == DEAD and s["done"] > 0


@pytest.fixture(scope="module")
def crawl(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Crawl]:
    redis_server.client().flushall()
    url, logs = redis_server.url, tmp_path_factory.mktemp("dashboard")
    site, later = SiteServer(PAGES), SiteServer(LATER_PAGES)
    closed = free_port()
    seeds = [site.url("/page/0.html")] + [
        f"http://127.0.0.1:{closed}/gone/{i}" for i in range(DEAD)
    ]
    assert run_scrapy(["seed", "site", *seeds], url).returncode == 0
    nodes = [start_node("site", url, logs / f"n{i}.log", *FAST) for i in range(2)]
    dashboard = None
    try:
        dashboard, port = start_dashboard(url)
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: idle(base), 60, "the crawl to go idle")
        yield Crawl(url, site, later, base)
    finally:
        for proc in [*nodes, *([dashboard] if dashboard else [])]:
            proc.terminate()
        for proc in [*nodes, *([dashboard] if dashboard else [])]:
            proc.wait(timeout=30)
        site.close()
        later.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        pytest.skip("needs Debian's chromium and chromium-driver (.ci/run installs them)")
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never download a browser
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="chromium-")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1400,2000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_script_timeout(10)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(autouse=True)
def left_running(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that fails while the crawl is paused does not fail the next
    ones too (the module's tests share the crawl)."""
    crawl = request.getfixturevalue("crawl") if "crawl" in request.fixturenames else None
    yield
    if crawl is not None and api_status(crawl.base).get("paused"):
        assert run_scrapy(["resume", "site"], crawl.url).returncode == 0


def open_page(driver: Any, address: str) -> None:
    driver.get(address)
    wait_for(lambda: driver.execute_script("return document.body.dataset.loaded"), 20, "the page")


def page_totals(driver: Any) -> dict[str, Any]:
    return driver.execute_script(
        "const out = {};"
        "document.querySelectorAll('#totals [data-field]').forEach("
        "  (d) => { out[d.dataset.field] = JSON.parse(d.dataset.value); });"
        "return out;"
    )


def refreshes(driver: Any) -> int:
    return int(driver.execute_script("return document.body.dataset.loaded || 0"))


def test_page_numbers_match_scrapy_status(crawl, browser):
    open_page(browser, crawl.base)
    before = status(crawl.url)
    # The second refresh from now began after `before` was read.
    seen = refreshes(browser)
    wait_for(lambda: refreshes(browser) >= seen + 2, 10, "the page to refresh")
    shown = page_totals(browser)
    after = status(crawl.url)
    assert {f: shown[f] for f in STEADY} == {f: before[f] for f in STEADY}
    assert {f: after[f] for f in STEADY} == {f: before[f] for f in STEADY}
    assert shown["done"] >= PAGES and shown["dead_letters"] == DEAD
    for rate in ("pages_per_min", "items_per_min"):
        low, high = sorted((before[rate], after[rate]))
        assert low <= shown[rate] <= high, rate  # idle: the rates only fall
    rows = browser.execute_script(
        "return [...document.querySelectorAll('#nodes tbody tr')]"
        ".map((r) => [...r.cells].map((c) => c.textContent));"
    )
    assert sorted(r[0] for r in rows) == sorted(n["node"] for n in before["nodes"])
    assert [r[3] for r in rows] == ["running", "running"]
    reasons = browser.find_element("css selector", "#dead tbody").text
    assert "ConnectionRefused" in reasons and str(DEAD) in reasons


def drawn_traces(driver: Any, chart: str) -> int:
    """Lines of *chart* that Plotly drew with at least two points."""
    return int(
        driver.execute_script(
            "return [...document.querySelectorAll("
            "  arguments[0] + ' .scatterlayer .trace path.js-line')]"
            ".filter((p) => (p.getAttribute('d') || '').split(/[ML]/).length > 2).length;",
            f"#{chart}",
        )
    )


def test_buttons_stay_put_across_refreshes(crawl, browser):
    """A button replaced at each poll could swallow a click made then (CI's
    click on Resume once hit a stale element): they are kept until the
    crawl's state or its letters change."""
    open_page(browser, crawl.base)
    pause = browser.find_element("css selector", "#actions button.pause")
    requeue = browser.find_element("css selector", "#dead tbody button.requeue")
    seen = refreshes(browser)
    wait_for(lambda: refreshes(browser) >= seen + 2, 10, "the page to refresh")
    assert pause.is_displayed() and requeue.is_displayed()  # stale would raise


def test_charts_draw(crawl, browser):
    open_page(browser, crawl.base)
    wait_for(lambda: drawn_traces(browser, "chart-pages") >= 3, 15, "total and per-node lines")
    for chart in ("chart-items", "chart-frontier", "chart-dead"):
        assert browser.find_elements("css selector", f"#{chart} svg.main-svg"), chart
        assert drawn_traces(browser, chart) >= 1, chart
    shot = os.environ.get("DASHBOARD_SCREENSHOT")
    if shot:  # docs/dashboard.png of the README is made this way
        browser.save_screenshot(shot)


def test_time_series_is_bounded(crawl, redis_server):
    client = redis_server.client()
    keys = sorted(client.scan_iter(match="{site}:ts:*"))
    assert len(keys) == 2
    for key in keys:
        assert 2 <= client.llen(key) <= 7
        assert 0 < client.pttl(key) <= 7200
        last = Sample.decode(client.lindex(key, -1))
        assert last is not None and abs(last.time - time.time()) < 5 and last.queued == 0


def test_pause_and_resume_from_the_page(crawl, browser):
    open_page(browser, crawl.base)
    browser.find_element("css selector", "#actions button.pause").click()
    wait_for(lambda: status(crawl.url)["paused"], 10, "scrapy status to show it paused")
    wait_for(lambda: browser.find_element("id", "paused-badge").is_displayed(), 5, "the badge")
    assert run_scrapy(["seed", "site", crawl.later.url("/page/0.html")], crawl.url).returncode == 0
    time.sleep(2.5)  # two heartbeats: the nodes would have leased it by now
    paused = status(crawl.url)
    assert paused["queued"] == 1 and paused["in_flight"] == 0
    assert crawl.later.page_counts() == {}, "nodes leased while paused"
    domains = browser.find_element("css selector", "#domains tbody")
    wait_for(lambda: domains.text.split()[:3] == ["127.0.0.1", "1", "0"], 5, "the queued domain")
    wait_for(lambda: browser.find_elements("css selector", "#actions button.resume"), 5, "resume")
    browser.find_element("css selector", "#actions button.resume").click()
    wait_for(lambda: len(crawl.later.page_counts()) == LATER_PAGES, 30, "the crawl to go on")
    assert not status(crawl.url)["paused"]
    assert set(crawl.later.page_counts().values()) == {1}
    wait_for(lambda: idle(crawl.base), 30, "the crawl to go idle again")


def test_requeue_by_reason_from_the_page(crawl, browser):
    open_page(browser, crawl.base)
    before = api_status(crawl.base)["requeued"]
    rows = browser.find_elements("css selector", "#dead tbody tr")
    row = next(
        r for r in rows if "ConnectionRefused" in r.find_element("css selector", ".reason").text
    )
    row.find_element("css selector", "button.requeue").click()
    browser.switch_to.alert.accept()
    wait_for(lambda: api_status(crawl.base)["requeued"] == before + DEAD, 10, "the requeue")
    wait_for(lambda: "requeue:" in browser.find_element("id", "message").text, 5, "the answer")
    assert f'"requeued": {DEAD}' in browser.find_element("id", "message").text
    # On a closed port they fail again and come back as dead letters.
    wait_for(lambda: idle(crawl.base), 30, "the requeued letters to die again")
    assert status(crawl.url)["requeued"] == before + DEAD


def test_loopback_dashboard_refuses_other_names_and_other_origins(crawl):
    def get(host: str | None) -> int:
        headers = {"Host": host} if host else {}
        request = urllib.request.Request(crawl.base + "/api/crawls", headers=headers)
        try:
            return int(urllib.request.urlopen(request, timeout=10).status)
        except urllib.error.HTTPError as exc:
            return exc.code

    port = crawl.base.rsplit(":", 1)[1]
    assert get(None) == get(f"localhost:{port}") == 200
    assert get(f"rebound.example:{port}") == 403  # DNS rebinding
    # Without the custom header (a form another site posts): refused.
    assert post(crawl.base, "/api/crawls/site/pause", None) == 403
    assert not api_status(crawl.base)["paused"]


def test_actions_need_the_token_beyond_loopback(crawl):
    proc, port = start_dashboard(crawl.url, "--bind", "0.0.0.0")
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        token = next(ln for ln in lines if "need this token" in ln).rsplit(": ", 1)[1].strip()
        base = f"http://127.0.0.1:{port}/api/crawls/site"
        assert post(base, "/pause", None) == 403
        assert post(base, "/pause", "") == 403
        assert post(base, "/pause", "not-" + token) == 403
        assert not status(crawl.url)["paused"]
        assert post(base, "/pause", token) == 200
        assert status(crawl.url)["paused"]
        assert post(base, "/resume", token) == 200
        assert not api_status(crawl.base)["paused"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_page_asks_for_the_token_beyond_loopback(crawl, browser):
    proc, port = start_dashboard(crawl.url, "--bind", "0.0.0.0", "--token", "s3cret")
    try:
        page = f"http://127.0.0.1:{port}/"
        open_page(browser, page)
        assert browser.find_elements("id", "token-input")
        assert not browser.find_elements("css selector", "button.pause, button.requeue")
        open_page(browser, page + "?token=s3cret")
        assert "s3cret" not in browser.current_url  # kept out of history and screenshots
        browser.find_element("css selector", "#actions button.pause").click()
        wait_for(lambda: status(crawl.url)["paused"], 10, "the crawl to pause")
        wait_for(lambda: browser.find_elements("css selector", "button.resume"), 5, "resume")
        browser.find_element("css selector", "#actions button.resume").click()
        wait_for(lambda: not api_status(crawl.base)["paused"], 10, "the crawl to resume")
    finally:
        browser.execute_script("sessionStorage.clear()")
        proc.terminate()
        proc.wait(timeout=30)


def test_read_only_offers_no_actions(crawl, browser):
    proc, port = start_dashboard(crawl.url, "--read-only", "--bind", "0.0.0.0")
    try:
        base = f"http://127.0.0.1:{port}"
        for action in ("pause", "resume", "requeue"):
            assert post(base, f"/api/crawls/site/{action}", "") in (404, 405)
        open_page(browser, base)
        assert browser.find_element("css selector", "#dead tbody").text  # letters shown
        assert browser.find_elements("css selector", "button") == []
        assert not api_status(crawl.base)["paused"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
