"""The topologies of tests/topologies.py work, checked with plain redis-py clients:
a cluster and a Sentinel group survive a kill -9 of their master with the data
written before, a TLS server takes only clients with a CA-signed certificate,
and an ACL user is held to its rules."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio.cluster as aiocluster
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel

from tests.redis_nodes import wait_for
from tests.topologies import (
    AclServer,
    Cluster,
    SentinelGroup,
    TopologyError,
    debian_redis_available,
    redis_acl,
    redis_cluster,
    redis_sentinel,
    redis_server,
    redis_tls,
)

pytestmark = pytest.mark.skipif(
    not debian_redis_available(),
    reason="needs Debian's /usr/bin/redis-server and redis-cli (.ci/run installs them)",
)

KEYS = [f"key:{i}" for i in range(200)]
# A refused client would otherwise take ~3.5 s of redis-py's default backoff to give up.
NO_RETRY = Retry(NoBackoff(), 0)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with redis_cluster(tmp_path) as topology:
        yield topology


@pytest.fixture
def sentinel_group(tmp_path: Path) -> Iterator[SentinelGroup]:
    with redis_sentinel(tmp_path) as topology:
        yield topology


@pytest.fixture
def acl_server(tmp_path: Path) -> Iterator[AclServer]:
    with redis_acl(tmp_path) as topology:
        yield topology


def test_cluster_clients_spread_keys_over_all_masters(cluster: Cluster) -> None:
    masters = {node.address for node in cluster.masters()}
    assert len(masters) == 3
    assert {cluster.master_for_key(key).address for key in KEYS} == masters
    rc = RedisCluster.from_url(cluster.seed_url, decode_responses=True)
    for key in KEYS:
        rc.set(key, f"sync {key}")
    assert [rc.get(key) for key in KEYS] == [f"sync {key}" for key in KEYS]
    for address in masters:  # each master holds exactly the keys of its slots
        node = cluster.node_at(address)
        mine = [k for k in KEYS if cluster.master_for_key(k) is node]
        assert node.client().dbsize() == len(mine) > 0
    rc.close()

    async def scenario() -> list[bytes | str | None]:
        arc = aiocluster.RedisCluster.from_url(cluster.seed_url, decode_responses=True)
        for key in KEYS:
            await arc.set(key, f"async {key}")
        values = [await arc.get(key) for key in KEYS]
        await arc.aclose()
        return values

    assert asyncio.run(scenario()) == [f"async {key}" for key in KEYS]


def test_cluster_keeps_replicated_keys_across_a_master_kill(cluster: Cluster) -> None:
    rc = RedisCluster.from_url(cluster.seed_url, decode_responses=True)
    for key in KEYS:
        rc.set(key, key)
    victim = cluster.master_for_key(KEYS[0])
    (replica,) = cluster.replicas_of(victim)
    assert victim.client().execute_command("WAIT", 1, 2000) == 1
    cluster.kill9(victim)
    started = time.monotonic()
    promoted = cluster.wait_failover(victim)
    print(f"cluster failover took {time.monotonic() - started:.1f}s")
    assert promoted is replica
    assert cluster.master_for_key(KEYS[0]) is replica
    # The same client finds the new owner (its connection to the dead one fails,
    # it refreshes the slot map and retries).
    assert [rc.get(key) for key in KEYS] == KEYS
    rc.close()

    async def scenario() -> list[bytes | str | None]:
        arc = aiocluster.RedisCluster.from_url(cluster.seed_url, decode_responses=True)
        values = [await arc.get(key) for key in KEYS]
        await arc.aclose()
        return values

    assert asyncio.run(scenario()) == KEYS
    victim.restart()  # empty, it rejoins as the promoted node's replica and resyncs
    cluster.wait_ready()
    assert cluster.replicas_of(promoted) == [victim]
    assert victim.probe().dbsize() == promoted.probe().dbsize() > 0


def test_sentinel_master_for_follows_a_failover(sentinel_group: SentinelGroup) -> None:
    sentinel = Sentinel(sentinel_group.sentinel_addresses, socket_timeout=2)
    master = sentinel.master_for(sentinel_group.service_name, decode_responses=True)
    assert sentinel.discover_master("mymaster") == ("127.0.0.1", sentinel_group.master.port)
    master.set("before", "kill")
    assert master.execute_command("WAIT", 1, 2000) == 1
    old_pid = sentinel_group.master_pid
    sentinel_group.kill9_master()
    started = time.monotonic()
    new = sentinel_group.wait_failover()
    print(f"sentinel failover took {time.monotonic() - started:.1f}s")
    assert new.pid != old_pid
    assert sentinel.discover_master("mymaster") == ("127.0.0.1", new.port)
    assert master.get("before") == "kill"
    master.set("after", "failover")
    assert new.client().get("after") == "failover"


def test_tls_server_wants_a_ca_signed_client_certificate(tmp_path: Path) -> None:
    with redis_tls(tmp_path) as server:
        with_cert = redis.Redis.from_url(server.url, **server.client_kwargs())
        assert with_cert.ping()
        with_cert.set("k", "v")
        assert with_cert.get("k") == b"v"
        no_cert = redis.Redis.from_url(
            server.url, retry=NO_RETRY, **server.client_kwargs(client_cert=False)
        )
        with pytest.raises(redis.ConnectionError):
            no_cert.ping()
        plain = redis.Redis(port=server.node.port, socket_timeout=2, retry=NO_RETRY)
        with pytest.raises(redis.ConnectionError):
            plain.ping()
        untrusted = redis.Redis.from_url(server.url, socket_timeout=2, retry=NO_RETRY)
        with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
            untrusted.ping()


def test_tls_server_without_client_auth_takes_a_client_without_cert(tmp_path: Path) -> None:
    with redis_tls(tmp_path, client_auth=False) as server:
        client = redis.Redis.from_url(server.url, **server.client_kwargs(client_cert=False))
        assert client.ping()
        context = ssl.create_default_context(cafile=server.files.ca_cert)
        assert context.cert_store_stats()["x509_ca"] == 1


def test_acl_user_is_held_to_its_rules(acl_server: AclServer) -> None:
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(acl_server.url).ping()
    url = acl_server.add_user("crawler", "pw1", ["~crawl:*", "+get", "+set", "+ping"])
    user = redis.Redis.from_url(url, decode_responses=True)
    assert user.ping()
    user.set("crawl:a", "1")
    assert user.get("crawl:a") == "1"
    with pytest.raises(redis.exceptions.NoPermissionError):
        user.set("other:a", "1")
    with pytest.raises(redis.exceptions.NoPermissionError):
        user.flushall()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(url.replace("pw1", "wrong")).ping()
    assert acl_server.admin().get("crawl:a") == "1"


def test_failures_name_the_problem_and_show_the_server_log(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match="Bad directive") as exited:
        with redis_server(tmp_path, "no-such-directive yes"):
            pass
    assert "server exited" in str(exited.value)
    with redis_server(tmp_path) as node:
        with pytest.raises(TopologyError) as timed_out:
            wait_for(lambda: "the moon is not blue", 0.2, "blue moon", [node])
        message = str(timed_out.value)
        assert "blue moon: not reached within 0.2s" in message
        assert "last problem: the moon is not blue" in message
        assert "Ready to accept connections" in message
    assert not node.alive()
