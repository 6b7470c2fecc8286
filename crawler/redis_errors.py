"""Which Redis errors are worth retrying.

A transient error (the connection, a timeout, a server still loading its
data, a replica during failover, a cluster reconfiguring, memory full) says
nothing about what was sent: the same call can succeed later, so it is
retried with backoff. Any other error is permanent for that call: sending it
again gives the same answer, so the caller must isolate what caused it.
"""

from __future__ import annotations

import re

import redis
from redis import exceptions as rex

TRANSIENT: tuple[type[BaseException], ...] = (
    redis.ConnectionError,  # BusyLoadingError, AuthenticationError, MaxConnectionsError...
    redis.TimeoutError,
    OSError,
    rex.ReadOnlyError,
    rex.TryAgainError,
    rex.ClusterDownError,  # MasterDownError
    rex.ClusterError,
    rex.OutOfMemoryError,
)


# The codes of a server that cannot take the call now: loading, a replica,
# a cluster or master in failover, a busy script, and (min-replicas-to-write
# with too few replicas, a failing RDB save) refusing all writes.
_OUTAGE = re.compile(
    r"(?:^|: -)(?:LOADING|READONLY|TRYAGAIN|CLUSTERDOWN|MASTERDOWN|BUSY|NOREPLICAS|MISCONF)\b"
)


def is_transient(exc: BaseException) -> bool:
    """True if the call that raised *exc* may succeed if sent again later.
    A permission Redis denies counts: it says nothing about the data, so
    nothing is split or dead-lettered for it (the worker stops the node)."""
    if isinstance(exc, TRANSIENT) or is_permission(exc):
        return True
    # Some servers and proxies answer with the text only; Redis 6 wraps an
    # error a command met inside a script as "Error running script ...: -CODE".
    return isinstance(exc, rex.ResponseError) and _OUTAGE.search(str(exc)) is not None


def is_permission(exc: BaseException) -> bool:
    """True if Redis refused the user a command or key (ACL), directly or
    inside a script."""
    if isinstance(exc, rex.NoPermissionError):
        return True
    text = str(exc)
    return isinstance(exc, rex.ResponseError) and (
        "NOPERM" in text or "no permissions to" in text or "can't run this command" in text
    )


def permission_message(exc: BaseException, role: str) -> str:
    """What to tell the user when Redis refused a permission."""
    return (
        f"Redis refused a command this {role} needs: {str(exc).rstrip('.')}. The Redis "
        "user lacks an ACL "
        f"permission; `scrapy acl SPIDER --role {role}` prints the rules it needs "
        "(README: Redis users and ACLs)."
    )
