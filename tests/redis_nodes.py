"""The parts tests/topologies.py builds its Redis topologies from: a ``Node``
(one process of Debian's ``/usr/bin/redis-server`` on 127.0.0.1 in a tmp dir),
``wait_for`` (poll a condition, fail with every server's log tail), and
``killed_at_exit`` (SIGKILL each node's process group when the block exits,
on success and on failure alike).

Persistence is off (``save ""``, ``appendonly no``): the tests exercise
replication and failover, not disk recovery, and a fsync-free server starts
and syncs faster. So a killed node restarted with ``Node.restart()`` comes back
empty: a replica resyncs from its master, and an old master rejoins as a replica
once Sentinel or the cluster has promoted another node. Restarting a master
*before* failover loses its data, as it would in production without AOF.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

REDIS_SERVER = "/usr/bin/redis-server"
REDIS_CLI = "/usr/bin/redis-cli"
HOST = "127.0.0.1"

# A wait's check returns None when the state is reached, else what is missing.
Check = Callable[[], "str | None"]


class TopologyError(RuntimeError):
    """Raised when a topology does not start or reach the awaited state in time;
    the message carries the last missing condition and each server's log tail."""


def debian_redis_available() -> bool:
    """Whether Debian's redis-server and redis-cli are installed (.ci/run installs them)."""
    return os.access(REDIS_SERVER, os.X_OK) and os.access(REDIS_CLI, os.X_OK)


_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on, never handed out twice per process
    (a server started later must not get a port another one is about to bind)."""
    while True:
        with socket.socket() as s:
            s.bind((HOST, 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


@dataclass
class Node:
    """One redis-server process: ``dir`` holds its redis.conf (written on first
    start; Sentinel and the cluster rewrite it), its data and ``redis.log``."""

    name: str
    port: int
    dir: Path
    conf: list[str]
    args: list[str] = field(default_factory=list)
    client_kwargs: dict[str, Any] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    _probe: redis.Redis | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise TopologyError(f"{self.name} ({self.address}) was never started")
        return self.proc.pid

    @property
    def log(self) -> Path:
        return self.dir / "redis.log"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def client(self, **kwargs: Any) -> redis.Redis:
        """A new plain redis-py client (str replies) straight to this node."""
        options = {"decode_responses": True, "socket_timeout": 5, **self.client_kwargs}
        return redis.Redis(host=HOST, port=self.port, **{**options, **kwargs})

    def probe(self) -> redis.Redis:
        """The client the helpers query the node with: kept (a new connection
        per query made 200 lookups take a second) and never retrying, so a
        wait polls again instead of sitting in redis-py's backoff."""
        if self._probe is None:
            self._probe = self.client(socket_timeout=2, retry=Retry(NoBackoff(), 0))
        return self._probe

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        conf = self.dir / "redis.conf"
        if not conf.exists():
            conf.write_text("\n".join([f'dir "{self.dir}"', *self.conf]) + "\n")
        with self.log.open("ab") as log:
            # Its own session, so teardown can kill the server and any fork child.
            self.proc = subprocess.Popen(
                [REDIS_SERVER, str(conf), *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                start_new_session=True,
            )

    def wait_up(self, timeout: float = 10) -> None:
        def answers() -> str | None:
            if not self.alive():
                raise TopologyError(f"{self.name} exited\n{log_tails([self])}")
            return None if self.probe().ping() else "no PONG"

        wait_for(answers, timeout, f"{self.name} ({self.address}) answering PING", [self])

    def restart(self, timeout: float = 10) -> None:
        """Start a killed node again, same port, config and (empty) data dir."""
        self.start()
        self.wait_up(timeout)

    def kill9(self) -> None:
        """SIGKILL the server alone, as a crash would (a fork child may linger)."""
        os.kill(self.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)

    def stop(self) -> None:
        """Kill the server's whole process group (a fork child too); a server
        already reaped is left alone, as its pid may since name another process."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)


def log_tails(nodes: Iterable[Node], lines: int = 12) -> str:
    parts = []
    for node in nodes:
        text = node.log.read_text(errors="replace") if node.log.exists() else "(no log)"
        tail = "\n".join(text.splitlines()[-lines:])
        state = "alive" if node.alive() else "dead"
        parts.append(f"--- {node.name} {node.address} ({state}), {node.log}:\n{tail}")
    return "\n".join(parts)


def wait_for(check: Check, timeout: float, what: str, nodes: Iterable[Node]) -> float:
    """Poll ``check`` until it returns None; return the seconds it took. A Redis
    or socket error counts as "not yet" (a node may still be loading or failing
    over); on timeout raise TopologyError with the last problem and the logs."""
    started = time.monotonic()
    while True:
        try:
            problem = check()
        except (redis.RedisError, OSError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        if problem is None:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise TopologyError(
                f"{what}: not reached within {timeout:g}s; last problem: {problem}\n"
                + log_tails(nodes)
            )
        time.sleep(0.05)


def server_conf(port: int, *extra: str) -> list[str]:
    """The config every data node shares: loopback, no persistence, and replicas
    synced at once (Redis 7 otherwise waits 5 s for more replicas to join)."""
    return [
        f"port {port}",
        f"bind {HOST}",
        'save ""',
        "appendonly no",
        "repl-diskless-sync-delay 0",
        'logfile ""',
        *extra,
    ]


@contextmanager
def killed_at_exit() -> Iterator[list[Node]]:
    """A list to put started nodes in; all are killed when the block exits."""
    nodes: list[Node] = []
    try:
        yield nodes
    finally:
        for node in nodes:
            node.stop()


def start_all(nodes: list[Node], into: list[Node]) -> None:
    for node in nodes:
        into.append(node)
        node.start()
    for node in nodes:
        node.wait_up()


def pairs(reply: Any) -> dict[str, Any]:
    """A flat [k1, v1, k2, v2, ...] reply (RESP2) or a map (RESP3) as a dict."""
    if isinstance(reply, dict):
        return {str(k): v for k, v in reply.items()}
    return {str(k): v for k, v in zip(reply[::2], reply[1::2], strict=True)}


def replication(node: Node) -> dict[str, Any]:
    return node.probe().info("replication")


@contextmanager
def redis_server(
    tmp_path: Path, *conf: str, name: str = "server", client_kwargs: dict[str, Any] | None = None
) -> Iterator[Node]:
    """One plain server with extra config lines (e.g. ``"requirepass s3cret"``);
    ``client_kwargs`` go to every ``node.client()``, the readiness PING's too."""
    port = free_port()
    with killed_at_exit() as nodes:
        node = Node(name, port, tmp_path / f"{name}-{port}", server_conf(port, *conf))
        node.client_kwargs = dict(client_kwargs or {})
        start_all([node], nodes)
        yield node
