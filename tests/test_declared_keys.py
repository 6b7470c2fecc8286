"""Every key a script touches is declared in its KEYS (DESIGN.md: what
Redis Cluster, proxies and servers such as Dragonfly require).

A real crawl runs under ``MONITOR``: 2 ``scrapy crawl`` nodes over 3 domains
held to one request at a time with a delay (so requests park), a node
killed -9 (its leases and park inbox reclaimed), seeds pushed the
scrapy-redis way (raw seeds leased), requests that fail into the dead
letters and back with ``scrapy requeue``, and a Bloom-filter crawl seeded
past its first layer. Every command a script ran is checked: the keys Redis
says it touches (``COMMAND GETKEYS``) are among those its ``EVALSHA`` declared.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import redis

from tests.conftest import REDIS_CLI, run_scrapy, start_node, wait_nodes
from tests.hosts import HostSite, loopback_available

HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
PAGES = 60
_TOKEN = re.compile(rb'"((?:[^"\\]|\\.)*)"')
_ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"a": b"\a", b"b": b"\b"}


def _unescape(raw: bytes) -> bytes:
    out, i = bytearray(), 0
    while i < len(raw):
        c = raw[i : i + 1]
        if c != b"\\":
            out += c
            i += 1
        elif raw[i + 1 : i + 2] == b"x":
            out.append(int(raw[i + 2 : i + 4], 16))
            i += 4
        else:
            nxt = raw[i + 1 : i + 2]
            out += _ESCAPES.get(nxt, nxt)
            i += 2
    return bytes(out)


def parse_monitor(text: bytes) -> list[tuple[bool, list[bytes]]]:
    """(run by a script, command words) of each MONITOR line."""
    lines = []
    for line in text.splitlines():
        head, sep, _ = line.partition(b'] "')
        if not sep:
            continue
        words = [_unescape(m.group(1)) for m in _TOKEN.finditer(line, len(head))]
        lines.append((head.endswith(b" lua"), words))
    return lines


def undeclared(client: redis.Redis, lines: list[tuple[bool, list[bytes]]]) -> list[str]:
    """Script commands touching a key their EVALSHA did not declare."""
    problems, declared, scripts = [], set[bytes](), 0
    for in_lua, words in lines:
        name = words[0].lower()
        if not in_lua:
            if name in (b"evalsha", b"eval"):
                scripts += 1
                declared = set(words[3 : 3 + int(words[2])])
            continue
        try:
            keys = client.command_getkeys(*words)
        except redis.ResponseError:
            keys = []  # a command of no keys (TIME)
        keys = [k.encode() if isinstance(k, str) else k for k in keys]
        problems += [f"{words[:3]!r} touches {k!r}" for k in keys if k not in declared]
    assert scripts > 100, f"only {scripts} scripts ran"
    return problems


@pytest.mark.skipif(
    not all(loopback_available(h) for h in HOSTS), reason=f"needs loopback addresses {HOSTS}"
)
def test_scripts_touch_only_declared_keys(redis_server, redis_url, tmp_path: Path):
    log = tmp_path / "monitor.log"
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    with log.open("wb") as out:
        monitor = subprocess.Popen([REDIS_CLI, "-p", port, "monitor"], stdout=out)
    sites = [HostSite(h, PAGES) for h in HOSTS]
    try:
        time.sleep(0.3)
        _crawl(sites, redis_url, tmp_path)
        _bloom(redis_url)
    finally:
        monitor.terminate()
        monitor.wait()
        for site in sites:
            site.close()
    lines = parse_monitor(log.read_bytes())
    problems = undeclared(redis_server.client(), lines)
    assert not problems, "\n".join(problems[:20])
    touched = {w[1] for lua, w in lines if lua and len(w) > 1}
    assert any(b":park:" in k for k in touched) and any(b":parkin:" in k for k in touched)
    assert any(b":start_urls" in k for k in touched)  # raw seeds were leased


def _crawl(sites: list[HostSite], redis_url: str, tmp_path: Path) -> None:
    polite = (
        "CONCURRENT_REQUESTS_PER_DOMAIN=1",
        "DOWNLOAD_DELAY=0.01",
        "CRAWLER_LEASE_TIME=3",
        "CRAWLER_LEASE_RENEW_INTERVAL=1",
        "CRAWLER_DEAD_LETTER_EXIT_CODE=0",
        "RETRY_TIMES=0",
    )
    client = redis.Redis.from_url(redis_url)
    client.lpush("site:start_urls", sites[0].url("/page/0.html"))  # the scrapy-redis way
    # Nothing listens on port 1: dead-lettered, then queued again by requeue.
    seeds = [*(s.url("/page/0.html") for s in sites[1:]), "http://127.0.0.2:1/refused"]
    seeded = run_scrapy(["seed", "site", *seeds], redis_url)
    assert seeded.returncode == 0, seeded.stderr
    nodes = [start_node("site", redis_url, tmp_path / f"n{i}.log", *polite) for i in range(2)]
    deadline = time.monotonic() + 60
    while sum(len(s.page_hits()) for s in sites) < PAGES and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(nodes[0].pid, signal.SIGKILL)
    nodes[0].wait()
    nodes[0] = start_node("site", redis_url, tmp_path / "n0-r.log", *polite)
    assert wait_nodes(nodes, 120) == [0, 0]
    for site in sites:
        assert {h.path for h in site.page_hits() if h.path.startswith("/page/")} == {
            f"/page/{i}.html" for i in range(PAGES)
        }
    requeued = run_scrapy(["requeue", "site"], redis_url)
    assert requeued.returncode == 0, requeued.stderr
    assert "requeued 1 dead letters" in requeued.stdout, requeued.stdout


def _bloom(redis_url: str) -> None:
    urls = "\n".join(f"http://127.0.0.9/b/{i}" for i in range(3000))
    bloom = ("-s", "CRAWLER_SEEN_MODE=bloom", "-s", "CRAWLER_BLOOM_CAPACITY=1000")
    args = ["seed", "site", "-i", "-", *bloom, "-s", "CRAWLER_CRAWL_NAME=b"]
    done = run_scrapy(args, redis_url, input=urls)
    assert done.returncode == 0, done.stderr


def test_the_check_finds_an_undeclared_key(redis_server, redis_url):
    """The check itself: a script naming a key it did not declare is caught."""
    client = redis_server.client()
    log = b"\n".join(
        [
            b'1.0 [0 127.0.0.1:5] "EVALSHA" "abc" "1" "{t}:a"',
            b'1.1 [0 lua] "SET" "{t}:a" "1"',
            b'1.2 [0 lua] "INCR" "{t}:a:x"',
        ]
        * 101
    )
    problems = undeclared(client, parse_monitor(log))
    assert len(problems) == 101 and "{t}:a:x" in problems[0]
    quoted = parse_monitor(b'1.0 [0 lua] "RPUSH" "{t}:q" "a\\"b\\x00\\\\"')
    assert quoted == [(True, [b"RPUSH", b"{t}:q", b'a"b\x00\\'])]
