"""The soak's processes: a redis-server with AOF, and the `scrapy crawl site`
nodes, each incarnation with its own log."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.conftest import ANY_TELNET_PORT, ROOT, SCRAPY, RedisServer, scrapy_env

HELD = "{site}:held:*"


class AofRedis(RedisServer):
    """RedisServer with AOF (``appendfsync everysec``) and a log file; stop()
    is SIGTERM, i.e. SHUTDOWN, which writes and fsyncs the AOF before exit."""

    def __init__(self, port: int, dir: Path) -> None:
        dir.mkdir(parents=True, exist_ok=True)
        extra = ["--appendonly", "yes", "--appendfsync", "everysec"]
        super().__init__(port, dir, extra=[*extra, "--logfile", str(dir / "redis.log")])
        self.exit_codes: list[int] = []

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.exit_codes.append(self.proc.wait(60))
            self.proc = None

    def held(self, pid: int | None = None) -> int:
        """Requests held by the node with this pid, or by all nodes."""
        client = redis.Redis(port=self.port, socket_timeout=5)
        keys = [k for k in client.scan_iter(match=HELD, count=1000)]
        if pid is not None:
            keys = [k for k in keys if f"-{pid}-" in k.decode()]
        return sum(int(client.hlen(k)) for k in keys)


@dataclass
class Node:
    slot: int
    incarnation: int
    proc: subprocess.Popen[bytes]
    log: Path
    started: float

    @property
    def name(self) -> str:
        return f"n{self.slot}.{self.incarnation}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def closed_with(self) -> str:
        """Scrapy's close reason from the log ('' if none)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        marker = "Spider closed ("
        at = text.rfind(marker)
        return text[at + len(marker) : text.find(")", at)] if at >= 0 else ""

    def signal(self, sig: signal.Signals) -> None:
        if self.alive():
            os.kill(self.proc.pid, sig)


class Fleet:
    """N node slots; a slot's node can be killed and started again."""

    def __init__(self, workdir: Path, redis_url: str, settings: list[str], size: int) -> None:
        self.workdir = workdir
        self.redis_url = redis_url
        self.settings = settings
        self.nodes: list[Node] = []
        self.history: list[Node] = []
        for slot in range(size):
            self.nodes.append(self._launch(slot, 0))

    def _launch(self, slot: int, incarnation: int) -> Node:
        name = f"n{slot}.{incarnation}"
        log = self.workdir / f"{name}.log"
        args = [SCRAPY, "crawl", "site", "-s", f"LOG_FILE={log}", "-s", "LOG_LEVEL=INFO"]
        args += ANY_TELNET_PORT  # nodes start together
        args += ["-s", f"USER_AGENT=soak-{name}"]  # the site tells the nodes apart
        for setting in self.settings:
            args += ["-s", setting]
        with open(log.with_suffix(".out"), "wb") as out:
            proc = subprocess.Popen(
                args, cwd=ROOT, env=scrapy_env(self.redis_url), stdout=out, stderr=out
            )
        node = Node(slot, incarnation, proc, log, time.time())
        self.history.append(node)
        return node

    def restart(self, node: Node) -> Node:
        fresh = self._launch(node.slot, node.incarnation + 1)
        self.nodes[node.slot] = fresh
        return fresh

    def live(self, min_age: float = 0.0) -> list[Node]:
        now = time.time()
        return [n for n in self.nodes if n.alive() and now - n.started >= min_age]

    def kill_all(self) -> None:
        for node in self.nodes:
            if node.alive():
                node.signal(signal.SIGCONT)
                node.proc.kill()
                node.proc.wait()
