"""A real Sentinel group for tests (use it through tests/topologies.py): one
master, one replica and three sentinels (quorum 2) watching ``mymaster``, tuned
so a killed master is replaced in a few seconds."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.redis_nodes import (
    HOST,
    Node,
    free_port,
    killed_at_exit,
    pairs,
    replication,
    server_conf,
    start_all,
    wait_for,
)

SERVICE = "mymaster"


@dataclass
class SentinelGroup:
    """The group's processes. ``master`` and ``replica`` name the current
    roles: after ``wait_failover`` the promoted node is ``master`` and the
    killed one ``replica``: dead until ``replica.restart()``, after which the
    sentinels make it replicate from the new master, within ~10 s (they poll a
    replica's INFO every 10 s); ``wait_ready()`` waits for that."""

    master: Node
    replica: Node
    sentinels: list[Node]
    service_name: str = SERVICE

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """``[(host, port), ...]`` as ``redis.sentinel.Sentinel`` takes them."""
        return [(HOST, node.port) for node in self.sentinels]

    @property
    def master_pid(self) -> int:
        return self.master.pid

    @property
    def replica_pid(self) -> int:
        return self.replica.pid

    def all_nodes(self) -> list[Node]:
        return [self.master, self.replica, *self.sentinels]

    def kill9_master(self) -> None:
        self.master.kill9()

    def wait_ready(self, timeout: float = 20) -> float:
        """Wait until every sentinel sees the master up, its replica and the two
        other sentinels, and the replica's link is up; return seconds."""
        return wait_for(self._not_ready, timeout, "sentinel group ready", self.all_nodes())

    def wait_failover(self, timeout: float = 30) -> Node:
        """Wait until every live sentinel names the replica as the master and
        it says role:master (so it takes writes); swap ``master`` and ``replica``
        and return the new master."""
        old, new = self.master, self.replica

        def promoted() -> str | None:
            for sentinel in self.sentinels:
                if not sentinel.alive():
                    continue
                reply = sentinel.probe().execute_command(
                    "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service_name
                )
                if f"{reply[0]}:{reply[1]}" != new.address:
                    return f"sentinel {sentinel.address} names {reply[0]}:{reply[1]}"
            role = replication(new)["role"]
            return None if role == "master" else f"{new.address} is still role:{role}"

        wait_for(promoted, timeout, f"failover from {old.address}", self.all_nodes())
        self.master, self.replica = new, old
        return new

    def _not_ready(self) -> str | None:
        for sentinel in self.sentinels:
            reply = sentinel.probe().execute_command("SENTINEL", "MASTER", self.service_name)
            state = pairs(reply)
            address = f"{state['ip']}:{state['port']}"
            if state["flags"] != "master" or address != self.master.address:
                return f"sentinel {sentinel.address} sees {address} flags {state['flags']}"
            if int(state["num-slaves"]) < 1 or int(state["num-other-sentinels"]) < 2:
                return (
                    f"sentinel {sentinel.address} sees {state['num-slaves']} replicas and "
                    f"{state['num-other-sentinels']} other sentinels"
                )
        link = replication(self.replica).get("master_link_status")
        return None if link == "up" else f"replica {self.replica.address} link is {link}"


def sentinel_conf(port: int, master: Node, down_after_ms: int) -> list[str]:
    return [
        f"port {port}",
        f"bind {HOST}",
        'logfile ""',
        f"sentinel monitor {SERVICE} {HOST} {master.port} 2",
        f"sentinel down-after-milliseconds {SERVICE} {down_after_ms}",
        f"sentinel failover-timeout {SERVICE} {max(3 * down_after_ms, 3000)}",
        f"sentinel parallel-syncs {SERVICE} 1",
    ]


@contextmanager
def redis_sentinel(tmp_path: Path, down_after_ms: int = 1000) -> Iterator[SentinelGroup]:
    """Start the master, its replica (``replicaof``) and, once the replica is
    attached, three sentinels; wait until the group is ready."""
    with killed_at_exit() as started:
        port = free_port()
        master = Node("master", port, tmp_path / f"master-{port}", server_conf(port))
        start_all([master], started)
        port = free_port()
        conf = server_conf(port, f"replicaof {HOST} {master.port}")
        replica = Node("replica", port, tmp_path / f"replica-{port}", conf)
        start_all([replica], started)
        # Sentinels learn replicas from the master's INFO, which they poll
        # every 10 s: starting them after the replica attached saves that wait.
        wait_for(
            lambda: None if replication(master)["connected_slaves"] == 1 else "no replica yet",
            10,
            "replica attached",
            [master, replica],
        )
        sentinels = []
        for i in range(3):
            port = free_port()
            conf = sentinel_conf(port, master, down_after_ms)
            sentinels.append(
                Node(f"sentinel{i}", port, tmp_path / f"sentinel-{port}", conf, args=["--sentinel"])
            )
        start_all(sentinels, started)
        group = SentinelGroup(master, replica, sentinels)
        group.wait_ready()
        yield group
