"""Which Redis a node talks to, and the client it uses.

Precedence: ``-s REDIS_URL=...`` on the command line, then the ``REDIS_URL``
environment variable, then ``REDIS_URL`` (or scrapy-redis's ``REDIS_HOST`` /
``REDIS_PORT``) in the project settings, then the private local server.
scrapy-redis's ``REDIS_PARAMS`` password and db apply as they do for its
own clients.
Passwords are redacted from every URL we log.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import redis
import redis.asyncio as aioredis
from scrapy.settings import SETTINGS_PRIORITIES, BaseSettings
from scrapy.utils.conf import closest_scrapy_cfg

from crawler import default_settings
from crawler.exceptions import ConfigError, RedisUnavailable
from crawler.localredis import ensure_local_redis
from crawler.redact import redact_text

logger = logging.getLogger(__name__)

# The same generous timeouts scrapy-redis uses, so one slow call does not
# look like an outage.
_CLIENT_KWARGS: dict[str, Any] = {
    "socket_timeout": 30,
    "socket_connect_timeout": 10,
    "health_check_interval": 30,
}


def redact(url: str) -> str:
    """*url* with any password (in the user part or the query) replaced by ``***``."""
    url = redact_text(url)
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def configured_url(settings: BaseSettings) -> str | None:
    """The Redis URL the user asked for, or None for the local server."""
    url = _chosen_url(settings)
    return None if url is None else with_redis_params(url, settings)


def _chosen_url(settings: BaseSettings) -> str | None:
    setting = settings.get("REDIS_URL")
    if setting and (settings.getpriority("REDIS_URL") or 0) >= SETTINGS_PRIORITIES["cmdline"]:
        return str(setting)
    if os.environ.get("REDIS_URL"):
        return os.environ["REDIS_URL"]
    if setting:
        return str(setting)
    if settings.get("REDIS_HOST"):
        return f"redis://{settings.get('REDIS_HOST')}:{settings.getint('REDIS_PORT', 6379)}"
    return None


def with_redis_params(url: str, settings: BaseSettings) -> str:
    """*url* with scrapy-redis's ``REDIS_PARAMS`` username, password and db
    (and ``REDIS_DB``) where the URL has none, as scrapy-redis's clients use
    them, so the framework and scrapy-redis components talk to the same
    database. Only redis:// and rediss:// URLs (not the private unix socket)."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        return url
    params = settings.getdict("REDIS_PARAMS")
    password = params.get("password")
    db = settings.get("REDIS_DB") or params.get("db")
    netloc, path = parts.netloc, parts.path
    if password and parts.password is None:
        user = quote(str(params.get("username") or parts.username or ""), safe="")
        netloc = f"{user}:{quote(str(password), safe='')}@{netloc.rpartition('@')[2]}"
    if db not in (None, "") and path in ("", "/") and "db=" not in parts.query:
        if not str(db).isdigit():
            raise ConfigError(f"REDIS_DB / REDIS_PARAMS['db'] = {db!r} is not a database number.")
        path = f"/{int(db)}"
    return urlunsplit(parts._replace(netloc=netloc, path=path))


def project_root() -> Path:
    cfg = closest_scrapy_cfg()
    return Path(cfg).parent if cfg else Path.cwd()


def resolve_url(settings: BaseSettings) -> str:
    """The URL to use, starting the private local server if none is configured."""
    url = configured_url(settings)
    if url:
        return url
    rel = settings.get("CRAWLER_LOCAL_REDIS_DIR", default_settings.CRAWLER_LOCAL_REDIS_DIR)
    data_dir = (project_root() / rel).resolve()
    url, started = ensure_local_redis(data_dir)
    logger.info(
        "No REDIS_URL set: %s the private local Redis at %s (data in %s). "
        "Set REDIS_URL to share a crawl between machines.",
        "started" if started else "joined",
        url,
        data_dir,
    )
    return url


def check_reachable(url: str) -> None:
    """Ping Redis once, raising a clear error naming the (redacted) URL."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
        client.ping()
        client.close()
    except (redis.RedisError, ValueError) as exc:
        raise RedisUnavailable(
            f"cannot reach Redis at {redact(url)}: {exc}. Check that the server is "
            "running and reachable from this machine, and the REDIS_URL's host, port, "
            "user and password (rediss:// for TLS)."
        ) from None


def async_client(url: str, lease_seconds: float | None = None) -> aioredis.Redis:
    """The asyncio client. A crawl node passes its lease time: one Redis call
    must time out well within a lease, or a node stuck on it would still hand
    out requests another node has reclaimed meanwhile."""
    kwargs = dict(_CLIENT_KWARGS)
    if lease_seconds is not None:
        kwargs["socket_timeout"] = min(kwargs["socket_timeout"], max(1.0, lease_seconds / 4))
    return aioredis.Redis.from_url(url, **kwargs)
