"""The least Redis ACL rules each role needs (``scrapy acl``).

A role may run exactly the commands it sends and, inside the Lua scripts it
runs, the commands those scripts call (Redis checks both against the user),
on the crawl's own keys only: ``{NAME}:*``, the scrapy-redis seed key and the
``crawler:crawls`` index. The script commands are read from the scripts
themselves, so the rules follow the code.

Roles:
  node    ``scrapy crawl``
  seeder  ``scrapy seed`` (and ``redis-cli lpush`` to the seed key)
  reader  ``scrapy status SPIDER``, ``scrapy export``, ``scrapy deadletters``
  follower ``scrapy export --follow`` (a reader that stores its cursor and,
          with CRAWLER_EXPORT_TRIM, empties exported items)
  admin   all of these plus ``reset``, ``requeue``, ``pause``/``resume``
"""

from __future__ import annotations

import re
from importlib import resources

from crawler.keys import CRAWLS_KEY, Keys

# Connecting: redis-py's handshake (it goes on without CLIENT SETINFO, which
# Redis 7.0 does not have), and its cluster client's discovery of slots and
# of where commands keep their keys.
_CONNECT = (
    "auth",
    "hello",
    "ping",
    "cluster|info",
    "cluster|slots",
    "cluster|shards",
    "command",
)
_READ = (
    "exists",
    "get",  # robots.txt copies (the dashboard's domains table)
    "hget",
    "hgetall",
    "hlen",
    "hmget",
    "hscan",
    "llen",
    "lrange",
    "pttl",
    "scard",
    "smembers",
    "time",
    "type",
    "zcard",
    "zcount",
    "zrange",
    "zrangebyscore",
)
_SCRIPTS = ("evalsha", "script|load")
_NODE_PY: tuple[str, ...] = ("set", "hset", "hsetnx", "hkeys", "sadd", "multi", "exec")
_NODE_PY += ("watch", "discard")
# The dashboard's time series (crawler.timeseries).
_NODE_PY += ("rpush", "ltrim", "pexpire")
# A finished crawl's time to live (crawler.jobs).
_NODE_PY += ("pttl", "persist", "zrange", "hkeys")
_FOLLOW_PY = ("xrange", "hset", "xtrim", "rpush", "ltrim", "hdel")  # crawler.follow
_ADMIN_PY = ("unlink", "scan", "srem", "sscan", "hdel", *_FOLLOW_PY)

_NODE_LUA = (
    "commit",
    "lease",
    "lease_raw",
    "heartbeat",
    "expired",
    "requeue_held",
    "add_stats",
    "bloom_grow",
    "_polite",
    "due_peek",
    "due_move",
    "crawl_delay",
)
_ROLE_LUA = {
    "node": _NODE_LUA,
    "seeder": ("commit", "bloom_grow", "_polite"),
    "reader": (),
    "follower": (),
    "admin": (*_NODE_LUA, "requeue_dead"),
}
_ROLE_PY = {
    "node": (*_READ, *_SCRIPTS, *_NODE_PY),
    "seeder": ("hget", "hmget", "hsetnx", "sadd", *_SCRIPTS),
    "reader": _READ,
    "follower": (*_READ, *_FOLLOW_PY),
    "admin": (*_READ, *_SCRIPTS, *_NODE_PY, *_ADMIN_PY),
}
ROLES = tuple(_ROLE_LUA)


def script_commands(names: tuple[str, ...]) -> set[str]:
    """The commands the Lua scripts *names* call."""
    found: set[str] = set()
    for name in names:
        source = resources.files("crawler").joinpath("lua", f"{name}.lua").read_text()
        found.update(c.lower() for c in re.findall(r"redis\.call\('([A-Za-z]+)'", source))
    return found


def commands(role: str) -> list[str]:
    """Every command *role* runs, sorted."""
    if role not in _ROLE_LUA:
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    return sorted(set(_CONNECT) | set(_ROLE_PY[role]) | script_commands(_ROLE_LUA[role]))


def rules(role: str, keys: Keys) -> list[str]:
    """The ACL rules of *role* for the crawl of *keys* (for ``ACL SETUSER``)."""
    access = "%R~" if role == "reader" else "~"
    patterns = [f"{access}{_glob_escape(keys.tag)}:*", f"{access}{CRAWLS_KEY}"]
    # The crawl's other partitions ({NAME~p}, crawler.partitions).
    patterns.append(f"{access}{_glob_escape('{' + keys.name + '~')}*}}:*")
    patterns.append(f"{access}{_glob_escape(keys.start_urls)}")
    return ["resetkeys", *patterns, "resetchannels", "-@all", *(f"+{c}" for c in commands(role))]


def _glob_escape(key: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", key)
