"""Real servers for the tests: a redis-server per session, a counting HTTP
site per test, and helpers that run real ``scrapy`` processes."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from crawler.demosite import QuietServer, Site, make_handler
from crawler.localredis import redis_server_binary

ROOT = Path(__file__).resolve().parents[1]
SCRAPY = str(Path(sys.executable).with_name("scrapy"))
REDIS_CLI = str(Path(redis_server_binary()).with_name("redis-cli"))

#: A crawl's telnet console on any free port: crawls started together (two
#: nodes of a test, or tests on other pytest -n workers) otherwise race for
#: the first of Scrapy's range, and Twisted's listen() then fails with
#: EADDRINUSE in one of them (an error and a traceback in its log).
ANY_TELNET_PORT = ("-s", "TELNETCONSOLE_PORT=0")
#: The commands that start a crawl (and with it the telnet console).
_CRAWLING = ("crawl", "runspider")
_TELNET = re.compile(r"Telnet console listening on [\d.]+:(\d+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RedisServer:
    port: int
    dir: Path
    proc: subprocess.Popen[bytes] | None = None
    extra: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--save",
                "",
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    redis_server.client().flushall()
    return redis_server.url


@pytest.fixture
def rclient(redis_server: RedisServer, redis_url: str) -> redis.Redis:
    return redis_server.client()


class SiteServer:
    """The demo site on a free loopback port, counting requests per path."""

    def __init__(
        self, pages: int, delays: dict[str, float] | None = None, tree: bool = False
    ) -> None:
        self.site = Site(pages, tree=tree)
        handler = make_handler(self.site)
        self.delays = delays or {}
        self.served_at: dict[str, float] = {}
        outer = self

        class Slow(handler):  # type: ignore[misc, valid-type]
            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?", 1)[0]
                if path in outer.delays:
                    time.sleep(outer.delays[path])
                super().do_GET()
                outer.served_at[path] = time.time()

        self.server = QuietServer(("127.0.0.1", 0), Slow)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def counts(self) -> dict[str, int]:
        with urllib.request.urlopen(self.base + "/__counts") as resp:
            return json.loads(resp.read())

    def page_counts(self) -> dict[str, int]:
        return {p: n for p, n in self.counts().items() if p.startswith("/page/")}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def make_site() -> Iterator[type[SiteServer]]:
    made: list[SiteServer] = []

    def factory(
        pages: int, delays: dict[str, float] | None = None, tree: bool = False
    ) -> SiteServer:
        server = SiteServer(pages, delays, tree)
        made.append(server)
        return server

    yield factory  # type: ignore[misc]
    for server in made:
        server.close()


def scrapy_env(redis_url: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    if redis_url:
        env["REDIS_URL"] = redis_url
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def run_scrapy(
    args: list[str],
    redis_url: str | None,
    cwd: Path = ROOT,
    input: str | None = None,
    timeout: float = 120,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    if args[:1] and args[0] in _CRAWLING:
        args = [args[0], *ANY_TELNET_PORT, *args[1:]]
    return subprocess.run(
        [SCRAPY, *args],
        cwd=cwd,
        env=scrapy_env(redis_url, **env),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_node(
    spider: str,
    redis_url: str | None,
    log: Path,
    *settings: str,
    cwd: Path = ROOT,
    spider_args: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    args = [
        SCRAPY,
        "crawl",
        spider,
        "-s",
        f"LOG_FILE={log}",
        "-s",
        "LOG_LEVEL=INFO",
        "-s",
        "CRAWLER_FINISH_GRACE=1",
        *ANY_TELNET_PORT,
    ]
    for arg in spider_args or []:
        args += ["-a", arg]
    for setting in settings:
        args += ["-s", setting]
    return subprocess.Popen(args, cwd=cwd, env=scrapy_env(redis_url, **(env or {})))


def read_jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_nodes(nodes: list[subprocess.Popen[bytes]], timeout: float) -> list[int | None]:
    """Each node's exit status; None for one still running after *timeout*
    (it is killed)."""
    codes: list[int | None] = []
    for node in nodes:
        try:
            codes.append(node.wait(timeout=timeout))
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()
            codes.append(None)
    return codes


def assert_any_telnet_port(log: str) -> None:
    """The crawl that wrote *log* listened for telnet on a port the system
    chose (ANY_TELNET_PORT), not on one of Scrapy's range (6023-6073)."""
    ports = [int(port) for port in _TELNET.findall(log)]
    assert ports, "no telnet console in the log"
    assert all(not 6023 <= port <= 6073 for port in ports), ports
