"""The benchmark's web site: static pages on disk, served by Debian's nginx.

Page ``i`` (``/page/<i>.html``) has a ``<title>``, some text, and links to its
children ``3i+1..3i+3`` (so every page is reachable from page 0) plus two
other pages (its parent and a pseudo-random one), so crawlers also meet
duplicates. nginx logs every request as ``<msec> <status> <uri>``: the
server's own count of what each crawler fetched and when.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.benchmarks.bench_util import progress
from tests.conftest import free_port

_FILLER = (
    "<p>Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
    "incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud "
    "exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat.</p>\n"
)


def page_html(i: int, pages: int) -> str:
    links = [3 * i + k for k in (1, 2, 3) if 3 * i + k < pages]
    links += [(i - 1) // 3 if i else 0, (i * 7919 + 13) % pages]
    body = "".join(f'<li><a href="/page/{j}.html">Page {j}</a></li>\n' for j in links)
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>Page {i}</title></head>\n<body><h1>Page {i}</h1>\n"
        f"{_FILLER * 4}<ul>\n{body}</ul>\n</body></html>\n"
    )


def generate(root: Path, pages: int) -> None:
    """Write ``pages`` pages under ``root/page/``."""
    folder = root / "page"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(pages):
        (folder / f"{i}.html").write_text(page_html(i, pages), encoding="utf-8")


_CONF = """\
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    default_type text/html;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    log_format bench '$msec $status $request_uri';
    access_log {prefix}/access.log bench;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""


def nginx_binary() -> str:
    """nginx on PATH (or /usr/sbin); installs Debian's package when run as root."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        progress("nginx not found: apt-get install -y -qq nginx")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "nginx"], check=False, env=env)
        # The package may start the system's own nginx on port 80; ours is separate.
        found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
        if found:
            return found
    sys.exit(
        "error: the crawl benchmarks need nginx. Install it with "
        "'sudo apt-get install -y nginx' (or run with --only to skip the crawls)."
    )


@dataclass
class Fetch:
    time: float
    status: int
    uri: str


@dataclass
class Nginx:
    """One nginx serving ``root`` on a free loopback port, logging to ``prefix``."""

    root: Path
    prefix: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.prefix / "access.log"

    def start(self) -> None:
        self.port = self.port or free_port()
        (self.prefix / "tmp").mkdir(parents=True, exist_ok=True)
        conf = self.prefix / "nginx.conf"
        conf.write_text(_CONF.format(prefix=self.prefix, port=self.port, root=self.root))
        self.proc = subprocess.Popen(
            [nginx_binary(), "-c", str(conf), "-p", str(self.prefix)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"{self.base}/page/0.html", timeout=2) as r:
                    r.read()
                return
            except OSError:
                time.sleep(0.05)
        errors = (self.prefix / "error.log").read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"nginx did not start: {errors}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None

    def mark(self) -> int:
        """Where the access log ends now; ``fetches(mark)`` reads what came after."""
        return self.log.stat().st_size if self.log.exists() else 0

    def fetches(self, since: int) -> list[Fetch]:
        with open(self.log, "rb") as handle:
            handle.seek(since)
            data = handle.read().decode("utf-8", "replace")
        out = []
        for line in data.splitlines():
            parts = line.split(" ", 2)
            if len(parts) == 3:
                out.append(Fetch(float(parts[0]), int(parts[1]), parts[2]))
        return out
