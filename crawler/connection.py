"""Which Redis a node talks to, and the client it uses.

Precedence: ``-s REDIS_URL=...`` on the command line, then the ``REDIS_URL``
environment variable, then ``REDIS_URL`` (or scrapy-redis's ``REDIS_HOST`` /
``REDIS_PORT``) in the project settings, then the private local server.
scrapy-redis's ``REDIS_PARAMS`` password and db apply as they do for its
own clients.
Passwords are redacted from every URL we log.

One URL names any topology, so every command and node is given one string:

- ``redis://``, ``rediss://`` (TLS), ``unix://``: one server, or a Redis
  Cluster found by asking the server (``CLUSTER INFO``) once per process;
  then redis-py's cluster client follows MOVED and ASK.
- ``redis+sentinel://[user:password@]host:port,host:port/SERVICE[/db]``
  (``rediss+sentinel://`` for TLS): the master of SERVICE, found through the
  sentinels and found again after a failover. ``sentinel_username`` and
  ``sentinel_password`` in the query authenticate to the sentinels.
- TLS files come from the URL's query (``ssl_ca_certs``, ``ssl_certfile``,
  ``ssl_keyfile``, ``ssl_cert_reqs``, as redis-py reads them) or from the
  ``CRAWLER_REDIS_SSL_*`` settings and ``REDIS_PARAMS``, which are folded
  into the URL.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import redis
import redis.asyncio as aioredis
import redis.asyncio.cluster as aiocluster
import redis.asyncio.sentinel as aiosentinel
import redis.cluster
import redis.sentinel
from scrapy.settings import SETTINGS_PRIORITIES, BaseSettings
from scrapy.utils.conf import closest_scrapy_cfg

from crawler import default_settings
from crawler.exceptions import ConfigError, RedisUnavailable
from crawler.localredis import ensure_local_redis
from crawler.redact import redact_text
from crawler.redis_errors import is_permission, is_transient

logger = logging.getLogger(__name__)

# The same generous timeouts scrapy-redis uses, so one slow call does not
# look like an outage.
_CLIENT_KWARGS: dict[str, Any] = {
    "socket_timeout": 30,
    "socket_connect_timeout": 10,
    "health_check_interval": 30,
}


SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")

# Settings folded into the URL's query (redis-py reads these names).
_SSL_SETTINGS = {
    "CRAWLER_REDIS_SSL_CA_CERTS": "ssl_ca_certs",
    "CRAWLER_REDIS_SSL_CERTFILE": "ssl_certfile",
    "CRAWLER_REDIS_SSL_KEYFILE": "ssl_keyfile",
}
_SSL_FILES = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
_SSL_PARAMS = (*_SSL_FILES, "ssl_cert_reqs", "ssl_check_hostname")


def redact(url: str) -> str:
    """*url* with any password (in the user part or the query) replaced by ``***``."""
    url = redact_text(url)
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hosts}"))


def configured_url(settings: BaseSettings) -> str | None:
    """The Redis URL the user asked for, or None for the local server."""
    url = _chosen_url(settings)
    return None if url is None else with_tls_files(with_redis_params(url, settings), settings)


def _chosen_url(settings: BaseSettings) -> str | None:
    setting = settings.get("REDIS_URL")
    if setting and (settings.getpriority("REDIS_URL") or 0) >= SETTINGS_PRIORITIES["cmdline"]:
        return str(setting)
    if os.environ.get("REDIS_URL"):
        return os.environ["REDIS_URL"]
    if setting:
        return str(setting)
    # Then as scrapy-redis's get_redis_from_settings: REDIS_PARAMS's url
    # (redis-py lets a URL outrank host and port), then REDIS_HOST and
    # REDIS_PORT over REDIS_PARAMS's host and port, each alone naming a
    # server (localhost, port 6379 by default). Only REDIS_HOST was read: a
    # project with REDIS_PORT alone, or REDIS_PARAMS, crawled a private
    # local Redis with nothing in it and exited 0.
    params = settings.getdict("REDIS_PARAMS")
    if params.get("url"):
        return str(params["url"])
    host = settings.get("REDIS_HOST") or params.get("host")
    port = settings.get("REDIS_PORT") or params.get("port")
    if host or port:
        try:
            port = int(port or 6379)
        except (TypeError, ValueError):
            raise ConfigError(
                f"REDIS_PORT / REDIS_PARAMS['port'] = {port!r} is not a port number."
            ) from None
        return f"redis://{host or 'localhost'}:{port}"
    return None


def with_redis_params(url: str, settings: BaseSettings) -> str:
    """*url* with scrapy-redis's ``REDIS_PARAMS`` username, password and db
    (and ``REDIS_DB``) where the URL has none, as scrapy-redis's clients use
    them, so the framework and scrapy-redis components talk to the same
    database. Only redis:// and rediss:// URLs (not the private unix socket)."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", *SENTINEL_SCHEMES):
        return url
    params = settings.getdict("REDIS_PARAMS")
    password = params.get("password")
    db = settings.get("REDIS_DB") or params.get("db")
    netloc, path = parts.netloc, parts.path
    if password and parts.password is None:
        user = quote(str(params.get("username") or parts.username or ""), safe="")
        netloc = f"{user}:{quote(str(password), safe='')}@{netloc.rpartition('@')[2]}"
    sentinel = parts.scheme in SENTINEL_SCHEMES
    if db not in (None, "") and not sentinel and path in ("", "/") and "db=" not in parts.query:
        if not str(db).isdigit():
            raise ConfigError(f"REDIS_DB / REDIS_PARAMS['db'] = {db!r} is not a database number.")
        path = f"/{int(db)}"
    return urlunsplit(parts._replace(netloc=netloc, path=path))


def with_tls_files(url: str, settings: BaseSettings) -> str:
    """*url* with the TLS files of the ``CRAWLER_REDIS_SSL_*`` settings and
    scrapy-redis's ``REDIS_PARAMS`` (``ssl_ca_certs``, ...) in its query,
    where the URL does not name them already."""
    params = settings.getdict("REDIS_PARAMS")
    extra = {name: params[name] for name in _SSL_PARAMS if params.get(name) not in (None, "")}
    for setting, name in _SSL_SETTINGS.items():
        if settings.get(setting):
            extra[name] = settings.get(setting)
    if not extra:
        return url
    parts = urlsplit(url)
    if not parts.scheme.startswith("rediss"):
        raise ConfigError(
            f"TLS files are set ({', '.join(sorted(extra))}) but REDIS_URL {redact(url)} "
            "is not a TLS URL: use rediss:// (or rediss+sentinel://)."
        )
    query = dict(parse_qsl(parts.query))
    for name, value in extra.items():
        if name in _SSL_FILES and not Path(str(value)).is_file():
            raise ConfigError(f"{name} = {value!r}: no such file. Give the path of the PEM file.")
        if isinstance(value, bool):  # ssl_check_hostname
            value = "true" if value else "false"
        query.setdefault(name, str(value))
    return urlunsplit(parts._replace(query=urlencode(query)))


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


#: URLs this process reached with check_reachable (``scrapy crawl`` checks
#: before the node starts; a node waits for such a Redis gone meanwhile).
REACHED: set[str] = set()


def check_reachable(url: str) -> None:
    """Ping Redis once, raising a clear error naming the (redacted) URL."""
    try:
        client = sync_client(url, socket_connect_timeout=5, socket_timeout=5)
        client.ping()
        client.close()
        REACHED.add(url)
    except (redis.RedisError, ValueError, OSError) as exc:
        raise RedisUnavailable(
            f"cannot reach Redis at {redact(url)}: {_why(exc, url)}. Check that the "
            "server is running and reachable from this machine, and the REDIS_URL's host, port, "
            "user and password (rediss:// for TLS; redis+sentinel://host:port,.../SERVICE "
            "for Sentinel)."
        ) from None


def _why(exc: BaseException, url: str) -> str:
    """What went wrong, said shortly (redis-py's own text for a Sentinel
    without a master carries the repr of every sentinel client)."""
    if isinstance(exc, redis.sentinel.MasterNotFoundError):
        service = urlsplit(url).path.strip("/").split("/")[0]
        return (
            f"no sentinel named a master for service {service!r} (none answered, the "
            "service name is wrong, or a failover is under way: try again in a few seconds)"
        )
    text = str(exc).rstrip(".")
    if urlsplit(url).scheme.startswith("rediss") and "EOF occurred in violation" in text:
        text += (
            " (the server closed the TLS handshake: it may want a client certificate, "
            "CRAWLER_REDIS_SSL_CERTFILE and CRAWLER_REDIS_SSL_KEYFILE)"
        )
    return text


def sync_client(url: str, **overrides: Any) -> Any:
    """A blocking client for *url*: ``redis.Redis``, ``redis.cluster.RedisCluster``
    or a Sentinel-managed master client (commands and tools)."""
    kwargs = {**_CLIENT_KWARGS, **overrides}
    if urlsplit(url).scheme in SENTINEL_SCHEMES:
        service, sentinels, master_kwargs, sentinel_kwargs = _sentinel_parts(url)
        manager = redis.sentinel.Sentinel(sentinels, sentinel_kwargs=sentinel_kwargs)
        return manager.master_for(service, **master_kwargs, **kwargs)
    if is_cluster(url):
        return redis.cluster.RedisCluster.from_url(url, **_cluster_kwargs(kwargs))
    return redis.Redis.from_url(url, **kwargs)


def async_client(url: str, lease_seconds: float | None = None) -> Any:
    """The asyncio client. A crawl node passes its lease time: one Redis call
    must time out well within a lease, or a node stuck on it would still hand
    out requests another node has reclaimed meanwhile."""
    kwargs = dict(_CLIENT_KWARGS)
    if lease_seconds is not None:
        kwargs["socket_timeout"] = min(kwargs["socket_timeout"], max(1.0, lease_seconds / 4))
    if urlsplit(url).scheme in SENTINEL_SCHEMES:
        service, sentinels, master_kwargs, sentinel_kwargs = _sentinel_parts(url)
        manager = aiosentinel.Sentinel(sentinels, sentinel_kwargs=sentinel_kwargs)
        return manager.master_for(service, **master_kwargs, **kwargs)
    if is_cluster(url):
        return aiocluster.RedisCluster.from_url(url, **_cluster_kwargs(kwargs))
    return aioredis.Redis.from_url(url, **kwargs)


def _cluster_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    # The cluster client checks connections on its own (MOVED, reconnects).
    return {k: v for k, v in kwargs.items() if k != "health_check_interval"}


_CLUSTER: dict[str, bool] = {}


def is_cluster(url: str) -> bool:
    """Whether *url* names a Redis Cluster node (asked once per process).
    A user who may not run ``CLUSTER INFO`` is taken to be on one server. An
    answer the server could not give (unreachable, loading) is not kept."""
    if urlsplit(url).scheme in SENTINEL_SCHEMES:
        return False
    if url in _CLUSTER:
        return _CLUSTER[url]
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5) as probe:
            info = probe.execute_command("CLUSTER", "INFO")
    except redis.ResponseError as exc:
        if is_transient(exc) and not is_permission(exc):
            return False  # loading, busy: ask again next time
        _CLUSTER[url] = False  # "cluster support disabled", or NOPERM
        return False
    except (redis.RedisError, OSError):
        return False  # unreachable: check_reachable says so
    text = info.decode() if isinstance(info, bytes) else str(info)
    _CLUSTER[url] = "cluster_state:" in text
    return _CLUSTER[url]


def _sentinel_parts(url: str) -> tuple[str, list[tuple[str, int]], dict[str, Any], dict[str, Any]]:
    """Service name, sentinel addresses, master client and sentinel client
    keyword arguments of a ``redis+sentinel://`` URL."""
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    sentinels = []
    for host in hosts.split(","):
        name, _, port = host.rpartition(":") if ":" in host else (host, "", "26379")
        if not name or not port.isdigit():
            raise ConfigError(f"REDIS_URL {redact(url)}: bad sentinel address {host!r}.")
        sentinels.append((name.strip("[]"), int(port)))
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ConfigError(
            f"REDIS_URL {redact(url)}: name the master's service, as in "
            "redis+sentinel://host:26379,host2:26379/mymaster[/db]."
        )
    query = dict(parse_qsl(parts.query))
    master: dict[str, Any] = {"db": int(path[1]) if len(path) == 2 else 0}
    if userinfo:
        user, _, password = userinfo.partition(":")
        master.update(username=unquote(user) or None, password=unquote(password) or None)
    tls: dict[str, Any] = {k: v for k, v in query.items() if k in _SSL_PARAMS}
    if "ssl_check_hostname" in tls:
        tls["ssl_check_hostname"] = tls["ssl_check_hostname"].lower() in ("1", "true", "yes")
    if parts.scheme == "rediss+sentinel":
        tls["ssl"] = True
    master.update(tls)
    sentinel: dict[str, Any] = {**tls, "socket_timeout": 5, "socket_connect_timeout": 5}
    if "sentinel_password" in query:
        sentinel["password"] = query["sentinel_password"]
        sentinel["username"] = query.get("sentinel_username")
    return unquote(path[0]), sentinels, master, sentinel
