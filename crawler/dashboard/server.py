"""The dashboard's HTTP server (aiohttp): the page, its assets and a JSON API.

Reads ``GET /api/crawls`` (every crawl's ``scrapy status --json``) and
``GET /api/crawls/NAME`` (one crawl with domains, dead letters and charts);
actions ``POST /api/crawls/NAME/pause``, ``/resume`` and ``/requeue``
(JSON ``{"reason": TEXT}``). Redis calls run in threads, never on the loop.

Actions need the header ``X-Dashboard-Token``: the token when one is set
(always when bound beyond loopback), else present and empty. A browser
sends a custom header to another origin only after a CORS preflight this
server never allows, so another web page cannot press the buttons. In
read-only mode the action routes do not exist. A dashboard on loopback
without a token answers only requests addressed to a loopback name (the
Host header), so a web page cannot reach it by DNS rebinding.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
from importlib import resources
from pathlib import Path
from typing import Any

import plotly
import redis
from aiohttp import web
from scrapy.settings import Settings

from crawler.commands._common import CommandFailed
from crawler.dashboard import data
from crawler.dashboard.actions import Actions, UnknownCrawl

TOKEN_HEADER = "X-Dashboard-Token"
_STATIC = resources.files("crawler.dashboard") / "static"
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}
# The chart library's own build, shipped in its wheel: nothing from a CDN.
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


class Dashboard:
    def __init__(
        self, client: Any, settings: Settings, token: str | None, read_only: bool, loopback: bool
    ) -> None:
        self.client = client
        self.settings = settings
        self.token = token
        self.read_only = read_only
        # Bound to loopback: without a token, only loopback Host names are served.
        self.loopback = loopback
        self.actions = Actions(client, settings)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._headers])
        app.router.add_get("/", self.index)
        app.router.add_get("/static/{name}", self.static)
        app.router.add_get("/api/config", self.config)
        app.router.add_get("/api/crawls", self.crawls)
        app.router.add_get("/api/crawls/{name}", self.crawl)
        if not self.read_only:
            app.router.add_post("/api/crawls/{name}/pause", self.pause)
            app.router.add_post("/api/crawls/{name}/resume", self.resume)
            app.router.add_post("/api/crawls/{name}/requeue", self.requeue)
        return app

    @web.middleware
    async def _headers(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.loopback and not self.token and not _loopback_host(request.host):
            raise web.HTTPForbidden(
                text=f"Host {request.host!r} refused: this dashboard is bound to loopback "
                "without --token and answers only to localhost or a loopback address; "
                "give --token to serve it under another name (behind a proxy)."
            )
        response: web.StreamResponse = await handler(request)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response

    async def index(self, request: web.Request) -> web.Response:
        return web.Response(text=(_STATIC / "index.html").read_text(), content_type="text/html")

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name == "plotly.min.js":
            return web.FileResponse(PLOTLY_JS, headers={"Content-Type": "text/javascript"})
        asset = _STATIC / name
        if "/" in name or name.startswith(".") or not asset.is_file():
            raise web.HTTPNotFound(text=f"no asset {name!r}")
        kind = _TYPES.get(Path(name).suffix, "application/octet-stream")
        return web.Response(body=asset.read_bytes(), content_type=kind)

    async def config(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"actions": not self.read_only, "token_required": bool(self.token)}
        )

    async def crawls(self, request: web.Request) -> web.Response:
        crawls = await _in_thread(data.overview, self.client, self.settings)
        return web.json_response({"crawls": crawls})

    async def crawl(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        found = await _in_thread(data.detail, self.client, self.settings, name)
        if found is None:
            raise web.HTTPNotFound(text=f"no crawl {name!r} in this Redis")
        return web.json_response(found)

    async def pause(self, request: web.Request) -> web.Response:
        return await self._act(request, self.actions.pause, True)

    async def resume(self, request: web.Request) -> web.Response:
        return await self._act(request, self.actions.pause, False)

    async def requeue(self, request: web.Request) -> web.Response:
        try:
            body = await request.json() if request.can_read_body else {}
        except json.JSONDecodeError:
            raise web.HTTPBadRequest(text='the body must be JSON: {"reason": TEXT}') from None
        reason = body.get("reason") if isinstance(body, dict) else None
        if reason is not None and not isinstance(reason, str):
            raise web.HTTPBadRequest(text='"reason" must be a string')
        return await self._act(request, self.actions.requeue, reason)

    async def _act(self, request: web.Request, action: Any, arg: Any) -> web.Response:
        self._authorize(request)
        try:
            result = await _in_thread(action, request.match_info["name"], arg)
        except UnknownCrawl as exc:
            raise web.HTTPNotFound(text=str(exc)) from None
        except CommandFailed as exc:  # e.g. requeue of a crawl whose spider is not here
            raise web.HTTPBadRequest(text=str(exc)) from None
        return web.json_response(result)

    def _authorize(self, request: web.Request) -> None:
        given = request.headers.get(TOKEN_HEADER)
        if given is None:
            raise web.HTTPForbidden(text=f"actions need the {TOKEN_HEADER} header")
        if self.token and not hmac.compare_digest(given.encode(), self.token.encode()):
            raise web.HTTPForbidden(text="wrong or missing dashboard token")


async def _in_thread(func: Any, *args: Any) -> Any:
    """*func*'s result, run off the loop; a Redis failure answers 503."""
    try:
        return await asyncio.to_thread(func, *args)
    except redis.RedisError as exc:
        raise web.HTTPServiceUnavailable(
            text=f"Redis failed ({type(exc).__name__}: {exc}); the page retries by itself"
        ) from None


def _loopback_host(host: str) -> bool:
    """True if a Host header names this machine's loopback."""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 or "]:" in host else host
    name = name.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
