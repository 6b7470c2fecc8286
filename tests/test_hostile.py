"""The hostile site (tests/hostile_site.py): the open web's odd inputs,
crawled by an ordinary spider (tests/hostile/) on two real ``scrapy crawl``
nodes, with one plain Scrapy process as the oracle.

The site is crawled twice, once per module: by plain Scrapy (no add-on) and
by the cluster. Each test checks one promise on those two runs: every node
exits, every page plain Scrapy fetched is fetched as often (the exceptions
named and asserted), what could not be fetched or stored is a dead letter
with its reason, the items are plain Scrapy's, and ``scrapy export`` writes
them in every format.
"""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from scrapy.exporters import XmlItemExporter

from tests.conftest import RedisServer, free_port, read_jsonl, run_scrapy, start_node, wait_nodes
from tests.hostile_site import BOUNDED_FAILURES, COOKIE_CHECKS, LOOPS, MANY, HostileServer
from tests.test_zoo import problems

HOSTILE = Path(__file__).resolve().parent / "hostile"
NODES = 2
NODE_TIMEOUT = 90
CUT = "cut emoji \ud83d"
LOOP_PREFIX = "/redirect/loop/"
Items = list[dict[str, Any]]


@dataclass
class Runs:
    base: str
    closed_port: int
    plain_counts: dict[str, int]
    plain_items: Items
    plain_log: str
    counts: dict[str, int]
    codes: list[int | None]
    logs: list[str]
    letters: list[dict[str, Any]]
    status: dict[str, Any]
    redis_url: str
    out: Path

    def problems(self) -> str:
        return problems(self.logs)

    def url(self, path: str) -> str:
        return self.base + path


def crawl_plain(out: Path, redis_url: str) -> tuple[Items, str]:
    """The spider in one plain Scrapy process. Its feed has no encoding, so
    Scrapy's exporter writes lone surrogates as JSON escapes instead of
    failing on them (FEED_EXPORT_ENCODING = "utf-8" would). REDIS_URL is set
    all the same: the project's `scrapy crawl` (COMMANDS_MODULE) checks Redis,
    and would start a private local one without it, even with no add-on."""
    feeds = json.dumps({str(out): {"format": "jsonlines", "encoding": None}})
    args = ["crawl", "hostile", "-s", "ADDONS={}", "-s", "LOG_LEVEL=INFO", "-s", f"FEEDS={feeds}"]
    result = run_scrapy(args, redis_url, cwd=HOSTILE, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "'scheduler/enqueued/memory'" in result.stderr  # Scrapy's own scheduler ran
    return read_jsonl(out), result.stderr


def crawl_cluster(redis_url: str, out: Path) -> tuple[list[int | None], list[str]]:
    logs = [out / f"node{i}.log" for i in range(NODES)]
    nodes = [start_node("hostile", redis_url, log, cwd=HOSTILE) for log in logs]
    codes = wait_nodes(nodes, NODE_TIMEOUT)
    return codes, [log.read_text() if log.exists() else "" for log in logs]


def scrapy_json(args: list[str], redis_url: str) -> list[Any]:
    result = run_scrapy(args, redis_url, cwd=HOSTILE)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def runs(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    out = tmp_path_factory.mktemp("hostile")
    closed_port = free_port()  # nothing listens there: the ftp:// link is refused
    server = HostileServer(closed_port)
    redis_server.client().flushall()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("HOSTILE_SITE", server.base)
            plain_items, plain_log = crawl_plain(out / "plain.jsonl", redis_server.url)
            plain_counts = server.take_counts()
            redis_server.client().flushall()
            codes, logs = crawl_cluster(redis_server.url, out)
            counts = server.take_counts()
            letters = scrapy_json(["deadletters", "hostile", "--json"], redis_server.url)
            (status,) = scrapy_json(["status", "hostile", "--json"], redis_server.url)
            yield Runs(
                server.base, closed_port, plain_counts, plain_items, plain_log, counts,
                codes, logs, letters, status, redis_server.url, out,
            )  # fmt: skip
    finally:
        server.close()


def export(runs: Runs, name: str, *settings: str) -> tuple[bytes, str]:
    out = runs.out / name
    args = ["export", "hostile", "-o", str(out)]
    for setting in settings:
        args += ["-s", setting]
    result = run_scrapy(args, runs.redis_url, cwd=HOSTILE, HOSTILE_SITE=runs.base)
    assert result.returncode == 0, result.stderr[-3000:]
    return out.read_bytes(), result.stderr


def letter_url(letter: dict[str, Any]) -> str:
    """The URL of the request a dead letter holds, else the letter's "url"
    (an item set aside may name its page there), else ""."""
    try:
        return str(json.loads(letter.get("entry") or "")["url"])
    except (ValueError, TypeError, KeyError):
        return str(letter.get("url") or "")


def letters_by_url(runs: Runs) -> dict[str, str]:
    return {letter_url(letter): str(letter.get("reason")) for letter in runs.letters}


# -- every node exits and says what it gave up on --------------------------


def test_every_node_exits_and_reports_its_dead_letters(runs: Runs) -> None:
    seen = runs.problems()
    # Finished holding dead letters: CRAWLER_DEAD_LETTER_EXIT_CODE (3).
    assert runs.codes == [3] * NODES, f"exit codes {runs.codes} (None: hung)\n{seen}"
    dead = len(runs.letters)
    assert dead > 0
    assert runs.status["dead_letters"] == dead == runs.status["dead"]
    top = runs.status["dead_reasons"]
    assert top and sum(r["count"] for r in top) <= dead and all(r["reason"] for r in top)
    assert runs.status["queued"] == 0 and runs.status["in_flight"] == 0
    for log in runs.logs:
        assert "Spider closed (finished)" in log, seen
        tail = log[log.rindex("holds ") :] if "holds " in log else ""
        assert tail.startswith(f"holds {dead:,} dead letters"), seen
        for reason in top:
            assert f"{reason['count']:,} x {reason['reason']}" in tail


def test_text_reports_show_the_same_dead_letters(runs: Runs) -> None:
    """What a user reads: ``scrapy deadletters`` and ``scrapy status`` as text."""
    dead = len(runs.letters)
    listed = run_scrapy(["deadletters", "hostile"], runs.redis_url, cwd=HOSTILE)
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert listed.stdout.rstrip().endswith(f"{dead} dead letters in crawl 'hostile'")
    for url in letters_by_url(runs):
        assert url[:100] in listed.stdout
    status = run_scrapy(["status", "hostile"], runs.redis_url, cwd=HOSTILE)
    assert status.returncode == 0, status.stderr[-3000:]
    assert f"dead letters now {dead:>10,}; commonest reasons:" in status.stdout


# -- every fetchable page fetched as plain Scrapy fetches it ----------------


def test_every_page_is_fetched_as_often_as_plain_scrapy_fetches_it(runs: Runs) -> None:
    plain, cluster = dict(runs.plain_counts), dict(runs.counts)
    # Plain Scrapy fetches its start URL twice: as a start request
    # (dont_filter, so never in its dupefilter), then once more when the
    # index links "#just-a-fragment". The cluster keys start requests apart
    # from links (crawler.fingerprints.start_fingerprint): the same.
    assert (plain.pop("/"), cluster.pop("/")) == (2, 2)
    # A dropped connection: Scrapy tries 3 times, and Twisted's connection
    # pool sends a request once more when a reused keep-alive connection
    # closes before answering, so 3 to 6 requests reach the site in either run.
    drop = "/broken/drop.html"
    assert 3 <= plain.pop(drop) <= 6 and 3 <= cluster.pop(drop) <= 6
    # A chunked body cancelled past DOWNLOAD_MAXSIZE: plain Scrapy's run was
    # once seen to request it twice (CI, on a loaded machine); the cause was
    # not established. Once or twice in either run.
    chunked = "/big/6mb-chunked.html"
    assert 1 <= plain.pop(chunked) <= 2 and 1 <= cluster.pop(chunked) <= 2
    # The redirect loops: test_redirect_loops_end_at_the_seen_set_after_a_pause.
    for counts in (plain, cluster):
        for path in [p for p in counts if p.startswith(LOOP_PREFIX)]:
            del counts[path]
    differ = {p: (cluster.get(p, 0), n) for p, n in plain.items() if cluster.get(p, 0) != n}
    extra = {p: n for p, n in cluster.items() if p not in plain}
    assert not differ and not extra, (
        f"(cluster, plain Scrapy) fetches: {differ}; only the cluster: {extra}\n{runs.problems()}"
    )
    # So every page is fetched once, but for the retries of
    # test_retries_redirects_and_traps_fetch_what_the_settings_allow.
    port = runs.base.rsplit(":", 1)[1]
    retried = {"/status/500", "/broken/slow.html", *BOUNDED_FAILURES}
    retried |= {"/broken/short-body.html", f"//127.1:{port}/robots.txt"}
    retried.add("/robots.txt")  # also the target of localhost's robots.txt redirect
    assert not {p: n for p, n in cluster.items() if n != 1 and p not in retried}


def test_retries_redirects_and_traps_fetch_what_the_settings_allow(runs: Runs) -> None:
    counts = runs.counts
    # RETRY_TIMES = 2: 500, timeouts and a short body are tried 3 times. 503
    # and 429 with Retry-After pause the domain cluster-wide and are fetched
    # again until they answer (after BOUNDED_FAILURES failures).
    expected = {"/status/500": 3, "/broken/slow.html": 3, "/broken/short-body.html": 3}
    expected |= {path: n + 1 for path, n in BOUNDED_FAILURES.items()}
    expected |= {"/status/404": 1, "/status/410": 1}
    # Every redirect hop once: loops end at the seen-set, the chain after
    # REDIRECT_MAX_TIMES (20) hops (chain/21 answers the 21st redirect).
    expected |= {f"/redirect/chain/{n}": 1 for n in range(1, 22)}
    expected |= {"/redirect/loop-a": 1, "/redirect/loop-b": 1, "/redirect/self": 1}
    # DEPTH_LIMIT = 4: the index is depth 0, /trap/1 depth 1.
    expected |= {f"/trap/{n}": 1 for n in range(1, 5)}
    expected |= {"/grow/a/" + "a/" * n: 1 for n in range(4)}
    # Many links to the same 100 pages: each once.
    expected |= {f"/many/{n}": 1 for n in range(MANY)}
    # robots.txt once per host for the whole cluster; 127.1's answers 500,
    # retried as any request (then Scrapy allows everything there).
    port = runs.base.rsplit(":", 1)[1]
    # localhost's redirects to 127.0.0.1's, fetched again as its target.
    expected |= {"/robots.txt": 2, f"//localhost:{port}/robots.txt": 1}
    expected |= {f"//127.1:{port}/robots.txt": 3, f"//127.1:{port}/hosts/short-ip": 1}
    wrong = {p: (counts.get(p, 0), n) for p, n in expected.items() if counts.get(p, 0) != n}
    assert not wrong, f"(fetched, expected): {wrong}"
    never = ["/redirect/chain/22", "/trap/5", "/grow/a/a/a/a/a/", "/private/secret.html"]
    never += ["/api/never.json", "/odd/after-ipv6-unclosed.html", "/odd/after-mailto.html"]
    assert not [p for p in never if p in counts]
    too_long = [p for p in counts if len(p) > 2083 - len(runs.base)]
    assert not too_long, "URLLENGTH_LIMIT let these through"


def test_redirect_loops_end_at_the_seen_set_after_a_pause(runs: Runs) -> None:
    """/redirect/loop/N-a <-> N-b, linked right after the 503 and 429 pages:
    each hop is fetched once, as in plain Scrapy, where the second visit of
    N-a is a duplicate. A request a node leased before its domain was paused
    is held back and queued again; it must keep its place in the seen-set's
    rules (not become dont_filter, which its redirects would inherit).
    Which requests are held back depends on timing: while the bug is there,
    about two runs in three hold back a loop."""
    loops = {f"{LOOP_PREFIX}{n}-{side}" for n in range(LOOPS) for side in "ab"}
    looped = {p: n for p, n in runs.counts.items() if p in loops and n != 1}
    held = sum(
        int(line.split(":")[1].strip(" ,"))
        for log in runs.logs
        for line in log.splitlines()
        if "'crawler/backoff/held_back'" in line
    )
    assert not looped and loops <= set(runs.counts), (
        f"fetched more than once: {looped} ({held} requests held back during pauses; "
        "crawler/backoff.py BackoffMiddleware.process_request queues them again "
        "with dont_filter=True, and RedirectMiddleware copies it to each redirect)"
    )


# -- what could not be fetched or stored is a dead letter with its reason --

#: Downloads given up on: path (or URL template) -> the reason's pattern.
FAILED_DOWNLOADS = {
    "/status/500": r"^HTTP 500 Internal Server Error \(after 3 attempts\)",
    "/broken/slow.html": r"^DownloadTimeoutError: .* 2\.0 seconds.* \(after 3 attempts\)",
    "/broken/short-body.html": r"^ResponseDataLossError.* \(after 3 attempts\)",
    "/broken/drop.html": r"^(DownloadFailedError|ResponseNeverReceived).* \(after 3 attempts\)",
    "/big/6mb.html": r"^DownloadCancelledError: .*larger than download max size.* \(after 1 ",
    "/big/6mb-chunked.html": r"^DownloadCancelledError.* \(after 1 attempts\)",
    "ftp://127.0.0.1:{closed}/file.txt": r"^ConnectionRefusedError: .* \(after 3 attempts\)",
    "about:blank": r"^NotSupported: Unsupported URL scheme 'about'.* \(after 1 attempts\)",
    "http://user:secret@127.0.0.1:{port}/hosts/userinfo": r"^ValueError: invalid hostname",
    # TLS to a plain HTTP port: the site answers the ClientHello with a 400
    # Scrapy cannot read (and does not count it: no request line it can parse).
    "https://127.0.0.1:{port}/odd/tls-to-a-plain-port": r"SSL.* \(after 3 attempts\)",
}
#: Given up on by a downloader middleware's process_response, which
#: DeadLetterMiddleware never sees: each reaches the errback, and nothing else.
GIVEN_UP_IN_MIDDLEWARES = {
    "/broken/bad-gzip.html": r"BadGzipFile|gzip",
    "/big/bomb.html": r"DOWNLOAD_MAXSIZE|decompress",
    "/redirect/chain/21": r"max redirections",
    "/redirect/to-mailto": r"scheme|mailto",
}


def expand(runs: Runs, spec: dict[str, str]) -> dict[str, str]:
    port = runs.base.rsplit(":", 1)[1]
    return {
        (runs.url(k) if k.startswith("/") else k.format(port=port, closed=runs.closed_port)): v
        for k, v in spec.items()
    }


def test_failed_downloads_are_dead_letters_with_their_reasons(runs: Runs) -> None:
    letters = letters_by_url(runs)
    expected = expand(runs, FAILED_DOWNLOADS)
    missing = sorted(set(expected) - set(letters))
    found = {u: letters[u] for u in expected if u in letters}
    wrong = {u: reason for u, reason in found.items() if not re.search(expected[u], reason)}
    assert not missing and not wrong, f"no dead letter: {missing}; wrong reason: {wrong}"
    # Each also reached the spider's errback, as in plain Scrapy.
    failed = {item["failed_url"] for item in read_jsonl(export_jsonl(runs)) if "failed_url" in item}
    assert set(expected) <= failed


def test_requests_given_up_in_downloader_middlewares_are_dead_letters(runs: Runs) -> None:
    """A bad gzip body, a decompression bomb, a redirect chain past
    REDIRECT_MAX_TIMES and a redirect to mailto: fail in a middleware's
    process_response: the errback runs, no retry, and the crawl gave up on
    the URL. "Nothing succeeds in silence": each is a dead letter."""
    letters = letters_by_url(runs)
    expected = expand(runs, GIVEN_UP_IN_MIDDLEWARES)
    missing = sorted(set(expected) - set(letters))
    assert not missing, f"given up on, no dead letter: {missing}\nletters: {sorted(letters)}"
    for url, pattern in expected.items():
        assert re.search(pattern, letters[url]), (url, letters[url])


def test_no_other_dead_letters(runs: Runs) -> None:
    known = set(expand(runs, FAILED_DOWNLOADS)) | set(expand(runs, GIVEN_UP_IN_MIDDLEWARES))
    # Items that could not be stored (from /api/, or naming no page) are
    # checked on their own; any other letter is a request nobody expected to fail.
    others = {
        url: reason
        for url, reason in letters_by_url(runs).items()
        if url and url not in known and "/api/" not in url and LOOP_PREFIX not in url
    }
    assert not others
    # And none twice (a replayed commit must not write its letters again).
    urls = Counter(letter_url(letter) for letter in runs.letters)
    assert not [url for url, n in urls.items() if n > 1 and url]


def test_items_that_cannot_be_stored_are_dead_letters(runs: Runs) -> None:
    """Three items the cluster cannot store as JSON, each of which must be
    stored or set aside with its reason, not only logged:

    * /api/nested-deep.json nests 600 objects: Scrapy's JSON exporters write
      it, ItemAdapter.asdict in crawler/codec.py:encode_item recurses too deep;
    * /api/top-level-list.json: the spider yields a list (no exporter takes it);
    * /broken/image.png: the item holds the file's first bytes (``bytes``,
      which Scrapy's JSON exporters refuse too)."""
    items = read_jsonl(export_jsonl(runs))
    letters = [json.dumps(letter) for letter in runs.letters]
    lines = runs.problems().splitlines()
    errors = "\n".join(line[:200] for line in lines if "Error processing" in line)

    def lettered(*needles: str) -> bool:
        return any(needle in letter for letter in letters for needle in needles)

    missing = []
    deep_stored = any("deep" in item for item in items)
    if not deep_stored and not lettered("nested-deep", "RecursionError", '{\\"deep\\"'):
        missing.append("the 600-deep item")
    if not lettered("top-level-list", "class 'list'", "type list"):
        missing.append("the list yielded as an item")
    if not lettered("image.png", "type bytes"):
        missing.append("the item holding bytes")
    assert not missing, f"not stored, no dead letter: {missing}\n{errors}"


# -- the items are plain Scrapy's ------------------------------------------


def export_jsonl(runs: Runs) -> Path:
    path = runs.out / "cluster.jsonl"
    if not path.exists():
        export(runs, path.name)
    return path


def canonical(item: dict[str, Any]) -> str:
    if str(item.get("failed_url", "")).endswith("/broken/drop.html"):
        item = {k: v for k, v in item.items() if k != "message"}  # which of Twisted's errors varies
    return json.dumps(item, sort_keys=True)


def is_cookie_check(item: dict[str, Any]) -> bool:
    return "/cookies/check/" in str(item.get("url"))


def is_loop(item: dict[str, Any]) -> bool:
    return LOOP_PREFIX in str(item.get("failed_url"))


def test_items_are_those_plain_scrapy_stores(runs: Runs) -> None:
    items = read_jsonl(export_jsonl(runs))
    # Cookies and redirect loops: tests of their own.
    plain = Counter(canonical(i) for i in runs.plain_items if not is_cookie_check(i))
    cluster = Counter(canonical(i) for i in items if not (is_cookie_check(i) or is_loop(i)))
    # The index twice, as in plain Scrapy: its start URL is fetched again
    # when linked (above), and each fetch's item is kept.
    (index_item,) = [k for k in plain if json.loads(k).get("url") == runs.url("/")]
    assert (plain[index_item], cluster[index_item]) == (2, 2)
    # The 600-deep item: test_items_that_cannot_be_stored_are_dead_letters.
    for counter in (plain, cluster):
        for key in [k for k in counter if k.startswith('{"deep"')]:
            del counter[key]
    only_plain = list((plain - cluster).elements())
    only_cluster = list((cluster - plain).elements())
    assert not only_plain and not only_cluster, (
        f"only plain Scrapy: {[k[:200] for k in only_plain]}\n"
        f"only the cluster: {[k[:200] for k in only_cluster]}"
    )
    assert any(item.get("name") == CUT for item in items)
    assert any(item.get("encoding") == "cp932" for item in items)  # Shift_JIS, by its header


@pytest.mark.xfail(
    reason="Cookies set by one node's response are in that node's CookiesMiddleware jar "
    "only: a link fetched by another node goes without them (plain Scrapy sends them)",
    strict=False,
)
def test_cookies_a_page_sets_reach_the_pages_it_links(runs: Runs) -> None:
    items = read_jsonl(export_jsonl(runs))
    plain = sorted(str(i["title"]) for i in runs.plain_items if is_cookie_check(i))
    cluster = sorted(str(i["title"]) for i in items if is_cookie_check(i))
    assert plain == [f"check/{n}: cookie yes" for n in range(COOKIE_CHECKS)]
    assert cluster == plain


def test_errback_items_keep_their_origin(runs: Runs) -> None:
    """Items yielded by an errback get an id from their request, as callback
    items do, so re-processing never stores them twice (issue 12, finding 7)."""
    lines = [line for log in runs.logs for line in log.splitlines()]
    warned = [line for line in lines if "without its origin" in line]
    assert not warned, warned[0]


# -- scrapy export in every format ------------------------------------------


def test_export_writes_every_format_with_the_lone_surrogate(runs: Runs) -> None:
    jsonl = export_jsonl(runs).read_bytes()
    # FEED_EXPORT_ENCODING is utf-8: the lone surrogate as its JSON escape.
    assert b'"name": "cut emoji \\ud83d"' in jsonl
    jsonl.decode("utf-8")
    whole, _ = export(runs, "cluster.json")
    assert b'"name": "cut emoji \\ud83d"' in whole
    items = json.loads(whole)
    assert len(items) == jsonl.count(b"\n") and any(i.get("name") == CUT for i in items)
    # CSV takes its columns from the first item unless FEED_EXPORT_FIELDS
    # names them; it cannot hold a lone surrogate: U+FFFD, with a note.
    csv, note = export(runs, "cluster.csv", "FEED_EXPORT_FIELDS=url,name,title,failed_url")
    assert "cut emoji \ufffd" in csv.decode("utf-8")
    assert "held lone surrogates" in note
    # XML: what Scrapy's XmlItemExporter writes for it (a character reference).
    xml, _ = export(runs, "cluster.xml")
    assert scrapy_xml_name(CUT) in xml
    assert xml.count(b"<item>") == len(items)


def scrapy_xml_name(name: str) -> bytes:
    out = io.BytesIO()
    exporter = XmlItemExporter(out, encoding="utf-8")
    exporter.start_exporting()
    exporter.export_item({"name": name})
    exporter.finish_exporting()
    found = re.search(rb"<name>.*?</name>", out.getvalue())
    assert found is not None
    return found.group()
