"""A real Redis Cluster for tests (use it through tests/topologies.py): N masters
with R replicas each, created by ``redis-cli --cluster create``, with a short
``cluster-node-timeout`` so a killed master's replica takes over in seconds."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.redis_nodes import (
    REDIS_CLI,
    Node,
    TopologyError,
    free_port,
    killed_at_exit,
    log_tails,
    replication,
    server_conf,
    start_all,
    wait_for,
)

# (first slot, last slot, master address) as one node sees them.
SlotMap = list[tuple[int, int, str]]


def slot_map(node: Node) -> SlotMap:
    # Two words, so no redis-py response callback reshapes the server's reply.
    reply = node.probe().execute_command("CLUSTER", "SLOTS")
    return sorted((int(r[0]), int(r[1]), f"{r[2][0]}:{r[2][1]}") for r in reply)


def cluster_state(node: Node) -> str:
    info = node.probe().execute_command("CLUSTER", "INFO")  # raw text, see slot_map
    return next(line.split(":", 1)[1] for line in info.splitlines() if "cluster_state" in line)


@dataclass
class Cluster:
    """The cluster's nodes and what a test needs to find, kill and await them.
    Roles are read from the servers, never assumed from start order."""

    nodes: list[Node]
    masters_expected: int
    replicas_expected: int
    _slot_of_killed: dict[str, int] = field(default_factory=dict)

    @property
    def seed_url(self) -> str:
        """``redis://127.0.0.1:PORT`` of a live master, for ``RedisCluster.from_url``."""
        return f"redis://{self.masters()[0].address}"

    @property
    def addresses(self) -> list[str]:
        """Every node's ``127.0.0.1:PORT``, dead ones included."""
        return [node.address for node in self.nodes]

    @property
    def pids(self) -> dict[str, int]:
        return {node.address: node.pid for node in self.nodes}

    def live(self) -> list[Node]:
        return [node for node in self.nodes if node.alive()]

    def node_at(self, address: str) -> Node:
        return next(node for node in self.nodes if node.address == address)

    def masters(self) -> list[Node]:
        """Live nodes owning slots, as the first live node sees it."""
        owners = {address for _, _, address in slot_map(self.live()[0])}
        return [node for node in self.live() if node.address in owners]

    def replicas_of(self, master: Node) -> list[Node]:
        return [
            node
            for node in self.live()
            if node is not master
            and (info := replication(node))["role"] == "slave"
            and f"{info['master_host']}:{info['master_port']}" == master.address
        ]

    def keyslot(self, key: str) -> int:
        return int(self.live()[0].probe().execute_command("CLUSTER", "KEYSLOT", key))

    def master_for_slot(self, slot: int) -> Node:
        for first, last, address in slot_map(self.live()[0]):
            if first <= slot <= last:
                return self.node_at(address)
        raise TopologyError(f"no node owns slot {slot}\n{log_tails(self.nodes)}")

    def master_for_key(self, key: str) -> Node:
        return self.master_for_slot(self.keyslot(key))

    def kill9(self, node: Node) -> None:
        """SIGKILL one node; remember a slot it owned so ``wait_failover`` can
        name the replica that takes over."""
        for first, _, address in slot_map(self.live()[0]):
            if address == node.address:
                self._slot_of_killed[address] = first
        node.kill9()

    def wait_ready(self, timeout: float = 20) -> float:
        """Wait until every live node says cluster_state:ok and sees the same
        slot owners, every live replica of a live master has its link up, and
        (while nothing was killed) every replica is attached; return seconds."""
        return wait_for(self._not_ready, timeout, "cluster ready", self.nodes)

    def wait_failover(self, old_master: Node, timeout: float = 30) -> Node:
        """Wait until a replica of the killed ``old_master`` owns its slots and
        the cluster is ready again; return that new master."""
        slot = self._slot_of_killed.get(old_master.address)
        if slot is None:
            raise TopologyError(f"{old_master.address} was not a master killed by kill9()")

        def promoted() -> str | None:
            owner = self.master_for_slot(slot).address
            if owner == old_master.address:
                return f"slot {slot} still owned by the dead {owner}"
            return self._not_ready()

        wait_for(promoted, timeout, f"failover of {old_master.address}", self.nodes)
        return self.master_for_slot(slot)

    def _not_ready(self) -> str | None:
        live = self.live()
        for node in live:
            if (state := cluster_state(node)) != "ok":
                return f"{node.address} cluster_state:{state}"
        maps = {node.address: slot_map(node) for node in live}
        if len({tuple(m) for m in maps.values()}) != 1:
            return f"nodes disagree on slot owners: {maps}"
        if len({address for _, _, address in maps[live[0].address]}) != self.masters_expected:
            return f"slot owners are not {self.masters_expected} masters: {maps[live[0].address]}"
        return self._replicas_not_up(live)

    def _replicas_not_up(self, live: list[Node]) -> str | None:
        addresses = {node.address for node in live}
        replicas = [(node, info) for node in live if (info := replication(node))["role"] == "slave"]
        for node, info in replicas:
            master = f"{info['master_host']}:{info['master_port']}"
            if master in addresses and info["master_link_status"] != "up":
                return f"replica {node.address} link to {master} is {info['master_link_status']}"
        if not self._slot_of_killed and len(replicas) != self.replicas_expected:
            return f"{len(replicas)} replicas attached, expected {self.replicas_expected}"
        return None


def cluster_node(root: Path, index: int, node_timeout_ms: int) -> Node:
    port, bus_port = free_port(), free_port()
    conf = server_conf(
        port,
        "cluster-enabled yes",
        f"cluster-port {bus_port}",
        "cluster-config-file nodes.conf",
        f"cluster-node-timeout {node_timeout_ms}",
        # A replica takes over however long ago it last heard from its master.
        "cluster-replica-validity-factor 0",
    )
    return Node(f"cluster{index}", port, root / f"cluster-{port}", conf)


@contextmanager
def redis_cluster(
    tmp_path: Path, masters: int = 3, replicas_per_master: int = 1, node_timeout_ms: int = 2000
) -> Iterator[Cluster]:
    """Start ``masters * (1 + replicas_per_master)`` nodes (at least 3 masters),
    create the cluster and wait until it is ready (see ``Cluster.wait_ready``)."""
    count = masters * (1 + replicas_per_master)
    with killed_at_exit() as started:
        nodes = [cluster_node(tmp_path, i, node_timeout_ms) for i in range(count)]
        start_all(nodes, started)
        create = [REDIS_CLI, "--cluster", "create", *(n.address for n in nodes)]
        create += ["--cluster-replicas", str(replicas_per_master), "--cluster-yes"]
        result = subprocess.run(create, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise TopologyError(
                f"{' '.join(create)} failed:\n{result.stdout}{result.stderr}\n{log_tails(nodes)}"
            )
        cluster = Cluster(nodes, masters, masters * replicas_per_master)
        cluster.wait_ready()
        yield cluster
