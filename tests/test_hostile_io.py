"""Bad input and a hostile environment: a clear ``error:`` naming the
input, exit status 1, and nothing the user had is lost or changed."""

from __future__ import annotations

import json
import os
import resource
import stat
import subprocess

import pytest
from scrapy import Request

from crawler.codec import encode_request
from crawler.frontier import dead_letter
from spiders.site import SiteSpider
from tests.conftest import (
    ROOT,
    SCRAPY,
    RedisServer,
    free_port,
    read_jsonl,
    run_scrapy,
    scrapy_env,
    start_node,
)
from tests.test_codec import make


def _store_items(rclient, count: int) -> None:
    rclient.hset(
        "{site}:items",
        mapping={f"id{i}": json.dumps({"url": f"http://x/{i}"}) for i in range(count)},
    )


def test_export_onto_a_device_writes_to_it_and_keeps_it(redis_url, rclient, tmp_path):
    _store_items(rclient, 3)
    device = tmp_path / "null.jsonl"
    try:
        os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # /dev/null
    except PermissionError:
        pytest.skip("needs permission to make a device node")
    result = run_scrapy(["export", "site", "-o", str(device)], redis_url)
    assert result.returncode == 0, result.stderr
    # Before: the device node was replaced by a regular file (as root,
    # `-o /dev/null` replaced the system's /dev/null).
    assert stat.S_ISCHR(device.stat().st_mode)


def test_export_keeps_the_mode_of_the_file_it_replaces(redis_url, rclient, tmp_path):
    _store_items(rclient, 3)
    out = tmp_path / "items.jsonl"
    out.write_text("")
    out.chmod(0o644)
    assert run_scrapy(["export", "site", "-o", str(out)], redis_url).returncode == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o644  # was 0o600 (mkstemp's)
    assert len(read_jsonl(out)) == 3


def test_export_makes_missing_directories_as_scrapy_does(redis_url, rclient, tmp_path):
    _store_items(rclient, 3)
    out = tmp_path / "new" / "dir" / "items.jsonl"
    result = run_scrapy(["export", "site", "-o", str(out)], redis_url)
    assert result.returncode == 0, result.stderr
    assert len(read_jsonl(out)) == 3


@pytest.mark.parametrize("follow", [False, True])
def test_export_to_a_path_it_cannot_write_is_an_error(redis_url, rclient, tmp_path, follow):
    _store_items(rclient, 3)
    blocker = tmp_path / "items"
    blocker.write_text("mine\n")  # a file where a directory should be
    out = blocker / "items.jsonl"
    args = ["export", "site", "-o", str(out)] + (["--follow"] if follow else [])
    result = run_scrapy(args, redis_url, timeout=60)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr
    assert "error: cannot write " in result.stderr and str(blocker) in result.stderr
    assert blocker.read_text() == "mine\n"


def test_export_onto_a_directory_is_an_error(redis_url, rclient, tmp_path):
    _store_items(rclient, 3)
    out = tmp_path / "items.jsonl"
    out.mkdir()
    result = run_scrapy(["export", "site", "-o", str(out)], redis_url)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr
    assert f"error: cannot write {str(out)!r}: Is a directory" in result.stderr


def test_seed_file_not_in_utf8_is_rejected_not_changed(redis_url, rclient, tmp_path):
    seeds = tmp_path / "seeds.txt"
    seeds.write_bytes(
        "http://example.com/caf\u00e9.html\nhttp://example.com/ok.html\n".encode("latin-1")
    )
    result = run_scrapy(["seed", "site", "-i", str(seeds)], redis_url)
    # Before: the é became U+FFFD and http://example.com/caf%EF%BF%BD.html
    # was queued, with exit status 0.
    assert result.returncode == 1
    assert "line 1: rejected: not UTF-8 text" in result.stderr
    assert "1 queued, 0 already seen, 1 rejected (2 lines read)" in result.stdout
    queued = b"".join(rclient.lrange("{site}:q:0", 0, -1))
    assert b"EF%BF%BD" not in queued and b"ok.html" in queued


def test_seed_file_with_a_utf8_bom_queues_its_first_line(redis_url, tmp_path):
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("http://example.com/1\r\nhttp://example.com/2\r\n", encoding="utf-8-sig")
    text = seeds.read_text(encoding="utf-8")  # keeps the BOM
    for args, stdin in ((["-i", str(seeds)], None), (["-i", "-"], text)):
        result = run_scrapy(["seed", "site", *args], redis_url, input=stdin)
        assert result.returncode == 0, result.stderr
        assert "0 rejected (2 lines read)" in result.stdout


@pytest.mark.parametrize(
    "setting",
    [
        "CRAWLER_CRAWL_TTL=abc",
        "CRAWLER_CRAWL_TTL=-3",
        "CRAWLER_CRAWL_TTL=1e400",
        "CRAWLER_FINISH_GRACE=abc",
        "CRAWLER_PREFETCH=x",
        "CRAWLER_LOCAL_SEEN_CACHE=-1",
        "CRAWLER_BACKOFF_RETRIES=many",
        "CRAWLER_RECRAWL_AFTER=daily",
        "CRAWLER_RECRAWL_DOMAINS=abc",
    ],
)
def test_bad_setting_values_are_named(redis_url, setting):
    result = run_scrapy(["status", "site", "-s", setting], redis_url)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr
    name = setting.split("=")[0]
    assert f"error: {name}=" in result.stderr


def test_redis_without_a_command_the_crawler_needs_is_an_error(tmp_path):
    server = RedisServer(free_port(), tmp_path, extra=["--rename-command", "EVALSHA", ""])
    server.start()
    try:
        result = run_scrapy(["seed", "site", "http://example.com/"], server.url)
    finally:
        server.stop()
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr
    assert "error: Redis does not know the command EVALSHA" in result.stderr


def test_crawl_on_a_redis_that_refuses_scripts_says_so_without_tracebacks(rclient, tmp_path):
    """A Redis with EVALSHA renamed away, or an ACL user without the script
    commands: `scrapy crawl` printed three tracebacks (the node's first
    heartbeat inside Scrapy's engine start, then Scrapy's own close) before
    "error: the node failed to start". Now one line says what Redis
    refused and what to do, before the node starts."""
    server = RedisServer(free_port(), tmp_path, extra=["--rename-command", "EVALSHA", ""])
    server.start()
    try:
        renamed = run_scrapy(["crawl", "site"], server.url)
    finally:
        server.stop()
    assert renamed.returncode == 1
    assert "Traceback" not in renamed.stderr, renamed.stderr
    assert "error: Redis does not know the command EVALSHA" in renamed.stderr
    assert "enable them on the server" in renamed.stderr
    rules = run_scrapy(["acl", "site", "--role", "node"], None).stdout.split()
    kept = [r for r in rules[rules.index("resetkeys") :] if r not in ("+evalsha", "+script|load")]
    rclient.execute_command("ACL", "SETUSER", "noscripts", "on", ">pw", *kept)
    try:
        port = rclient.connection_pool.connection_kwargs["port"]
        denied = run_scrapy(["crawl", "site"], f"redis://noscripts:pw@127.0.0.1:{port}/0")
    finally:
        rclient.execute_command("ACL", "DELUSER", "noscripts")
    assert denied.returncode == 1
    assert "Traceback" not in denied.stderr, denied.stderr
    assert "error: Redis refused a command this node needs" in denied.stderr
    assert "`scrapy acl SPIDER --role node` prints the rules" in denied.stderr


def test_export_of_a_crawl_not_in_this_redis_keeps_the_file(redis_url, rclient, tmp_path):
    _store_items(rclient, 3)
    out = tmp_path / "items.jsonl"
    assert run_scrapy(["export", "site", "-o", str(out)], redis_url).returncode == 0
    # The wrong db number (or CRAWLER_CRAWL_NAME): before, "exported 0
    # items", exit status 0, and the file of 3 items replaced by an empty one.
    wrong_db = redis_url.rsplit("/", 1)[0] + "/9"
    result = run_scrapy(["export", "site", "-o", str(out)], wrong_db)
    assert result.returncode == 1
    assert "error: no crawl 'site' in redis://" in result.stderr, result.stderr
    assert len(read_jsonl(out)) == 3


def test_follower_stopped_by_a_full_disk_goes_on_when_run_again(make_site, redis_url, tmp_path):
    """A follower whose disk filled (here: a file size limit) before it
    stored its first cursor was refused when run again, "exists and Redis
    holds no cursor", for the file it had begun itself."""
    site = make_site(30)
    assert run_scrapy(["seed", "site", site.url("/page/0.html")], redis_url).returncode == 0
    assert start_node("site", redis_url, tmp_path / "node.log").wait(timeout=120) == 0
    out = tmp_path / "items.jsonl"
    args = [SCRAPY, "export", "site", "-o", str(out), "--follow"]

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))

    full = subprocess.run(
        args,
        cwd=ROOT,
        env=scrapy_env(redis_url),
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=small_files,
    )
    assert full.returncode == 1
    assert f"error: cannot write {str(out)!r}: File too large" in full.stderr, full.stderr
    again = run_scrapy(args[1:], redis_url, timeout=60)
    assert again.returncode == 0, again.stderr
    urls = [item["url"] for item in read_jsonl(out)]
    assert len(urls) == len(set(urls)) == 30


def test_requeue_leaves_a_revisit_s_dead_letter_on_its_schedule(redis_url, rclient):
    """A revisit that failed stays on the revisit schedule; `scrapy requeue`
    of its dead letter put the page on the schedule once more, for good
    (helper 47: 5 to 13 entries for one page, fetched 39 times in 6 s).
    Letters of first visits are queued again as before."""
    spider = make(SiteSpider)
    state = {"f": "abcd", "h": "00", "i": 3}
    revisit = Request("http://127.0.0.1:9/r", meta={"crawler_recrawl": state})
    first = Request("http://127.0.0.1:9/f")
    for request in (revisit, first):
        letter = dead_letter("HTTP 502", encode_request(request, spider, lenient=True), "n1")
        rclient.rpush("{site}:dead", letter)
    result = run_scrapy(["requeue", "site"], redis_url)
    assert result.returncode == 0, result.stderr
    assert "requeued 1 dead letters" in result.stdout, result.stdout
    assert "still on the revisit schedule" in result.stdout, result.stdout
    left = [json.loads(raw)["entry"] for raw in rclient.lrange("{site}:dead", 0, -1)]
    assert len(left) == 1 and "/r" in left[0]
    # A revisit the frontier set aside (a poison request) left the schedule
    # with its letter: queued again like any other.
    poison = dead_letter(
        "delivered 5 times to nodes that died holding it (poison request?)",
        encode_request(revisit, spider, lenient=True),
        "n1",
    )
    rclient.delete("{site}:dead")
    rclient.rpush("{site}:dead", poison)
    again = run_scrapy(["requeue", "site"], redis_url)
    assert "requeued 1 dead letters" in again.stdout, again.stdout


def test_status_of_a_crawl_not_in_this_redis_says_so(redis_url, rclient):
    """A wrong db number or crawl name showed a crawl of zeros and nothing else."""
    result = run_scrapy(["status", "site", "--json"], redis_url)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["queued"] == 0
    assert "this Redis holds nothing of crawl 'site'" in result.stderr, result.stderr
    _store_items(rclient, 1)
    known = run_scrapy(["status", "site", "--json"], redis_url)
    assert "holds nothing" not in known.stderr, known.stderr


_SEED_LINES = "http://example.com/caf\u00e9\nhttp://example.com/2\n"


@pytest.mark.parametrize(
    "kind",
    ["gzip", "xz", "bzip2", "utf-16", "utf-16-be", "utf-32", "gzip+utf-16"],
)
def test_seed_file_compressed_or_in_utf16_is_read_as_it_is(redis_url, rclient, tmp_path, kind):
    """Before: every line of these files was rejected as not UTF-8 (1000
    "rejected" lines for a big file), and nothing was queued."""
    import bz2
    import codecs
    import gzip
    import lzma

    encode = {
        "utf-16": lambda t: t.encode("utf-16"),  # with its byte-order mark
        "utf-16-be": lambda t: codecs.BOM_UTF16_BE + t.encode("utf-16-be"),
        "utf-32": lambda t: t.encode("utf-32"),
        "gzip+utf-16": lambda t: gzip.compress(t.encode("utf-16")),
    }.get(kind, lambda t: {"gzip": gzip, "xz": lzma, "bzip2": bz2}[kind].compress(t.encode()))
    seeds = tmp_path / "seeds"
    seeds.write_bytes(encode(_SEED_LINES))
    for args, stdin in ((["-i", str(seeds)], None), (["-i", "-"], seeds.read_bytes())):
        rclient.flushall()
        result = subprocess.run(
            [SCRAPY, "seed", "site", *args],
            cwd=ROOT,
            env=scrapy_env(redis_url),
            input=stdin,
            capture_output=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr.decode()
        assert b"2 queued, 0 already seen, 0 rejected (2 lines read)" in result.stdout
        queued = b"".join(rclient.lrange("{site}:q:0", 0, -1))
        assert b"http://example.com/caf%C3%A9" in queued and b"example.com/2" in queued


def test_seed_file_cut_short_queues_what_came_before_and_says_so(redis_url, rclient, tmp_path):
    import gzip

    whole = gzip.compress("".join(f"http://example.com/{i}\n" for i in range(5000)).encode())
    seeds = tmp_path / "seeds.txt.gz"
    seeds.write_bytes(whole[: len(whole) * 3 // 4])  # a download that stopped
    result = run_scrapy(["seed", "site", "-i", str(seeds)], redis_url)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"error: seed file {str(seeds)!r} is not a whole gzip file" in result.stderr
    queued = rclient.hget("{site}:stats", "queued")
    assert queued is not None and 2000 <= int(queued) < 5000
    assert f"{int(queued)} queued" in result.stdout


def test_seed_file_in_utf16_with_a_bad_unit_rejects_that_line_only(redis_url, rclient, tmp_path):
    seeds = tmp_path / "seeds.txt"
    good = "http://example.com/1\n".encode("utf-16-le")
    # A lone low surrogate (0xDC00) on line 2: not UTF-16 text.
    bad = "http://example.com/".encode("utf-16-le") + b"\x00\xdc" + "\n".encode("utf-16-le")
    seeds.write_bytes(codecs_bom_le() + good + bad + good.replace(b"1", b"3"))
    result = run_scrapy(["seed", "site", "-i", str(seeds)], redis_url)
    assert result.returncode == 1, result.stderr
    assert "line 2: rejected: not UTF-8 text (nor UTF-16 or UTF-32" in result.stderr
    assert "2 queued, 0 already seen, 1 rejected (3 lines read)" in result.stdout


def codecs_bom_le() -> bytes:
    import codecs

    return codecs.BOM_UTF16_LE


def _interrupt_when(proc: subprocess.Popen, ready) -> tuple[int, str, str]:
    import signal
    import time

    deadline = time.monotonic() + 60
    while not ready() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None and ready(), "the command did not get to where it waits"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


def test_ctrl_c_in_seed_says_what_was_queued_without_a_traceback(redis_url, rclient, tmp_path):
    import re

    seeds = tmp_path / "seeds.txt"
    seeds.write_text("".join(f"http://example.com/{i}\n" for i in range(2_000_000)))
    proc = subprocess.Popen(
        [SCRAPY, "seed", "site", "-i", str(seeds)],
        cwd=ROOT,
        env=scrapy_env(redis_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    code, out, err = _interrupt_when(
        proc, lambda: int(rclient.hget("{site}:stats", "queued") or 0) >= 2000
    )
    # Before: a KeyboardInterrupt traceback, exit status -2, no summary.
    assert code == 130, err
    assert "Traceback" not in err
    assert "interrupted (Ctrl-C): seeding was interrupted" in err
    said = re.search(r"(\d+) queued, 0 already seen, 0 rejected \((\d+) lines read\)", out)
    assert said, out
    in_redis = int(rclient.hget("{site}:stats", "queued"))
    # What it says was queued was; a batch in flight may be queued too.
    assert 0 < int(said[1]) <= in_redis <= int(said[2]) < 2_000_000


def test_ctrl_c_in_export_leaves_the_file_and_says_so(redis_url, rclient, tmp_path):
    _store_items(rclient, 10)
    fifo = tmp_path / "feed"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [SCRAPY, "export", "site", "-o", str(fifo), "-t", "jsonl"],
        cwd=ROOT,
        env=scrapy_env(redis_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def opening_the_fifo() -> bool:  # nobody reads it: open() waits
        try:
            return open(f"/proc/{proc.pid}/wchan").read() in ("fifo_open", "wait_for_partner")
        except OSError:
            return False

    code, _, err = _interrupt_when(proc, opening_the_fifo)
    assert code == 130, err
    assert "Traceback" not in err
    assert f"interrupted (Ctrl-C): {fifo} was left as it was" in err


def test_a_misspelt_framework_setting_is_named_with_the_right_one(redis_url, rclient, tmp_path):
    # Before: ignored in silence, as Scrapy ignores unknown names; the crawl
    # ran without recrawling.
    result = run_scrapy(
        ["seed", "site", "http://example.com/", "-s", "CRAWLER_RECRAWL_AFTR=3600"], redis_url
    )
    assert result.returncode == 0, result.stderr
    assert (
        "unknown setting CRAWLER_RECRAWL_AFTR is ignored: did you mean CRAWLER_RECRAWL_AFTER?"
        in result.stderr
    )
    rclient.flushall()  # nothing to crawl: the node starts and finishes
    log = tmp_path / "node.log"
    node = start_node("site", redis_url, log, "CRAWLER_PARTITONS=2")
    assert node.wait(timeout=120) == 0
    text = log.read_text()
    assert "unknown setting CRAWLER_PARTITONS is ignored: did you mean CRAWLER_PARTITIONS?" in text
    # Known names are not warned of (the settings of this node, the seed's).
    assert text.count("unknown setting") == 1
