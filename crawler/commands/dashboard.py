"""``scrapy dashboard [--bind ADDR] [--port N] [--token T] [--read-only]``:
a live web page of every crawl in this Redis (``crawler.dashboard``)."""

from __future__ import annotations

import argparse
import ipaddress
import secrets
import socket
from typing import Any

from aiohttp import web

from crawler.commandbase import CrawlCommand
from crawler.commands._common import CommandFailed, open_redis, run_guarded
from crawler.connection import redact, sync_client
from crawler.dashboard.server import Dashboard


def is_loopback(bind: str) -> bool:
    """True if *bind* (an address or a host name) only listens on loopback."""
    try:
        infos = socket.getaddrinfo(bind, None)
    except socket.gaierror:
        raise CommandFailed(f"--bind {bind!r}: no such address or host name") from None
    return all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)


def choose_token(bind: str, token: str | None, read_only: bool) -> tuple[str | None, bool]:
    """(the token actions need, True if it was generated): one is made up
    when the dashboard offers actions beyond loopback and none was given."""
    if token or read_only or is_loopback(bind):
        return token or None, False
    return secrets.token_urlsafe(18), True


class Command(CrawlCommand):
    def syntax(self) -> str:
        return "[--bind ADDR] [--port N] [--token TOKEN] [--read-only]"

    def short_desc(self) -> str:
        return "Serve a live web page of every crawl in this Redis, with pause/resume/requeue"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument(
            "--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
        )
        parser.add_argument("--port", type=int, default=8050, help="port (default 8050)")
        parser.add_argument(
            "--token",
            help="token that pause, resume and requeue need (made up and printed "
            "when bound beyond loopback without one)",
        )
        parser.add_argument(
            "--read-only", action="store_true", help="offer no actions at all, only the view"
        )

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        run_guarded(self, lambda: self._run(opts))

    def _run(self, opts: argparse.Namespace) -> None:
        assert self.settings is not None
        if not 0 <= opts.port <= 65535:
            raise CommandFailed(f"--port {opts.port}: give a port between 0 and 65535")
        token, generated = choose_token(opts.bind, opts.token, opts.read_only)
        url = open_redis(self.settings)
        client: Any = sync_client(url)
        loopback = is_loopback(opts.bind)
        dashboard = Dashboard(client, self.settings, token, opts.read_only, loopback)
        _announce(url, opts, token if generated else None)
        try:
            web.run_app(dashboard.app(), host=opts.bind, port=opts.port, print=None)
        except OSError as exc:
            raise CommandFailed(f"cannot listen on {opts.bind}:{opts.port}: {exc}") from None
        finally:
            client.close()


def _announce(url: str, opts: argparse.Namespace, made_token: str | None) -> None:
    """Say where the dashboard is, and the token it made up, if any."""
    wildcard = opts.bind in ("0.0.0.0", "::", "")
    name = socket.gethostname() if wildcard else opts.bind
    host = f"[{name}]" if ":" in name else name
    where = f"http://{host}:{opts.port}/"
    print(f"Dashboard of {redact(url)} on {where} (listening on {opts.bind})", flush=True)
    if opts.read_only:
        print("Read-only: no pause, resume or requeue.", flush=True)
    elif made_token:
        print(
            f"Bound beyond loopback: actions need this token (or give --token): {made_token}\n"
            f"Open {where}?token={made_token}",
            flush=True,
        )
