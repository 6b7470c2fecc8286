"""Which Redis errors are worth retrying.

A transient error (the connection, a timeout, a server still loading its
data, a replica during failover, a cluster reconfiguring, memory full) says
nothing about what was sent: the same call can succeed later, so it is
retried with backoff. Any other error is permanent for that call: sending it
again gives the same answer, so the caller must isolate what caused it.
"""

from __future__ import annotations

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


def is_transient(exc: BaseException) -> bool:
    """True if the call that raised *exc* may succeed if sent again later."""
    if isinstance(exc, TRANSIENT):
        return True
    # Some servers and proxies answer with the text only.
    text = str(exc)
    return isinstance(exc, rex.ResponseError) and text.startswith(
        ("LOADING", "READONLY", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "BUSY ")
    )
