"""A real site crawled on real Redis topologies: Redis Cluster (3 masters,
3 replicas), Sentinel (1 master, 1 replica, 3 sentinels), TLS with client
certificates, and least-privilege ACL users. Each is Debian's redis-server
(tests/topologies.py), each crawl 3 ``scrapy crawl`` processes of the
CrawlSpider of tests/test_realsite.py over Debian's Python docs.

The oracle is plain Scrapy, run once per session: the cluster must fetch the
same pages, each once (the start page twice, as plain Scrapy does), export
the same items once each, and every node must exit 0. With a master killed
by ``kill -9`` mid-crawl, no page or item may be missing; pages fetched
again are bounded by what the nodes held when it died.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis.cluster import RedisCluster

from crawler.partitions import partition_of
from tests.conftest import read_jsonl, run_scrapy, start_node, wait_nodes
from tests.test_realsite import DOCS, DocServer
from tests.test_zoo import ZOO, problems
from tests.topologies import (
    debian_redis_available,
    redis_acl,
    redis_cluster,
    redis_sentinel,
    redis_server,
    redis_tls,
)

pytestmark = [
    pytest.mark.skipif(
        not debian_redis_available(),
        reason="Debian's redis-server is not installed: apt-get install redis-server "
        "redis-sentinel redis-tools (.ci/run does it)",
    ),
    pytest.mark.skipif(
        not (DOCS / "index.html").is_file(),
        reason=f"Debian's Python docs are not installed ({DOCS}) (.ci/run installs them)",
    ),
]

NODES = 3
CONCURRENCY = 8  # CONCURRENT_REQUESTS of each node (and its prefetch)
# The fault comes once this many pages were fetched, of about 530; each
# test checks it came mid-crawl.
FAULT_AT = 100


@dataclass
class Oracle:
    counts: Counter[str]
    titles: dict[str, object]


@pytest.fixture(scope="module")
def docs() -> Iterator[DocServer]:
    server = DocServer(DOCS)
    yield server
    server.close()


@pytest.fixture(scope="module")
def plain(docs: DocServer, tmp_path_factory: pytest.TempPathFactory) -> Oracle:
    """What plain Scrapy fetches and exports (no add-on, no Redis)."""
    out = tmp_path_factory.mktemp("plain") / "plain.jsonl"
    done = run_scrapy(
        ["crawl", "pydocs", "-s", "ADDONS={}", "-o", str(out)],
        None,
        cwd=ZOO,
        timeout=300,
        ZOO_SITE=docs.base,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    counts = docs.take_counts()
    return Oracle(counts, {str(i["url"]): i["title"] for i in read_jsonl(out)})


def crawl(
    url: str,
    docs: DocServer,
    tmp_path: Path,
    *settings: str,
    during: Callable[[DocServer], None] | None = None,
) -> tuple[Counter[str], list[int | None], list[str]]:
    """3 nodes crawl the docs to the end; the paths they fetched, their exit
    statuses and logs. *during* runs while they crawl."""
    docs.take_counts()
    logs = [tmp_path / f"node{i}.log" for i in range(NODES)]
    common = (f"CONCURRENT_REQUESTS={CONCURRENCY}", *settings)
    env_site = {"ZOO_SITE": docs.base}
    nodes = [_node(url, log, common, env_site) for log in logs]
    if during is not None:
        during(docs)
    codes = wait_nodes(nodes, timeout=300)
    return docs.take_counts(), codes, [log.read_text() if log.exists() else "" for log in logs]


def _node(
    url: str, log: Path, settings: tuple[str, ...], env: dict[str, str]
) -> subprocess.Popen[bytes]:
    os.environ.update(env)  # start_node passes this process's environment on
    return start_node("pydocs", url, log, *settings, cwd=ZOO)


def export(url: str, docs: DocServer, tmp_path: Path, *settings: str) -> list[dict[str, object]]:
    out = tmp_path / "items.jsonl"
    args = ["export", "pydocs", "-o", str(out)]
    for setting in settings:
        args += ["-s", setting]
    done = run_scrapy(args, url, cwd=ZOO, ZOO_SITE=docs.base)
    assert done.returncode == 0, done.stderr[-3000:]
    return read_jsonl(out)


def check_complete(
    plain: Oracle,
    counts: Counter[str],
    codes: list[int | None],
    logs: list[str],
    items: list[dict[str, object]],
    allowed_refetches: int = 0,
) -> int:
    """Every node exited 0 with ``finished``; the cluster fetched every page
    plain Scrapy fetched and exported its items once each. Returns the pages
    fetched more often than plain Scrapy fetched them."""
    assert codes == [0] * NODES, problems(logs)
    for text in logs:
        assert "Spider closed (finished)" in text, problems(logs)
    missing = sorted(set(plain.counts) - set(counts))
    extra = sorted(set(counts) - set(plain.counts))
    assert not missing and not extra, (missing[:10], extra[:10], problems(logs))
    refetched = sum(n - plain.counts[p] for p, n in counts.items() if n > plain.counts[p])
    assert all(n >= plain.counts[p] for p, n in counts.items())
    assert refetched <= allowed_refetches, (refetched, problems(logs))
    urls = [str(item["url"]) for item in items]
    assert len(urls) == len(set(urls)), "an item was exported twice"
    got = {str(i["url"]): i["title"] for i in items}
    assert got == plain.titles, (sorted(set(plain.titles) - set(got))[:10], len(got))
    return refetched


def wait_fetched(docs: DocServer, pages: int = FAULT_AT, timeout: float = 120) -> None:
    """Wait until the nodes fetched *pages* pages (without taking the counts)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with docs.lock:
            if sum(docs.counts.values()) >= pages:
                return
        time.sleep(0.01)
    raise AssertionError(f"the nodes fetched fewer than {pages} pages in {timeout}s")


def fetched(docs: DocServer) -> int:
    with docs.lock:
        return sum(docs.counts.values())


# One kill -9 may cost what the nodes held (leased, fetching, fetched and not
# yet committed) plus what the dead master acknowledged and never replicated.
REFETCH_BOUND = NODES * CONCURRENCY * 4


# The cluster crawl is split into one partition per master
# (crawler.partitions): the site's requests live in one, its items in all.
PARTITIONS = 3


def test_cluster_master_killed_mid_crawl(plain, docs, tmp_path):
    with redis_cluster(tmp_path) as cluster:
        # The master of the site's partition (the domain 127.0.0.1's).
        tag = ["{pydocs}", "{pydocs~1.", "{pydocs~2."][partition_of("127.0.0.1", PARTITIONS)]
        masters: list[object] = []
        failover: list[float] = []

        def kill_master(docs: DocServer) -> None:
            wait_fetched(docs)
            with RedisCluster.from_url(cluster.seed_url) as client:
                tags = json.loads(client.hget("{pydocs}:config", "partitions"))
            masters.extend(cluster.master_for_key(f"{t}:stats").address for t in tags)
            master = cluster.master_for_key(next(f"{t}:stats" for t in tags if t.startswith(tag)))
            cluster.wait_ready()  # its replica's link is up
            cluster.kill9(master)
            at_kill.append(fetched(docs))
            started = time.monotonic()
            cluster.wait_failover(master)
            failover.append(time.monotonic() - started)

        at_kill: list[int] = []
        parts = f"CRAWLER_PARTITIONS={PARTITIONS}"
        counts, codes, logs = crawl(cluster.seed_url, docs, tmp_path, parts, during=kill_master)
        assert at_kill[0] < sum(plain.counts.values()) * 0.6, "killed too late to matter"
        assert len(set(masters)) == PARTITIONS, masters  # one partition on each master
        items = export(cluster.seed_url, docs, tmp_path)
        refetched = check_complete(plain, counts, codes, logs, items, REFETCH_BOUND)
        print(f"cluster failover in {failover[0]:.1f}s; {refetched} pages fetched again")
        status = run_scrapy(["status", "pydocs", "--json"], cluster.seed_url, cwd=ZOO)
        assert status.returncode == 0, status.stderr[-2000:]
        done = sum(counts.values()) - counts["/robots.txt"]  # fetched apart, not a request
        assert f'"done": {done}, "dead": 0' in status.stdout, status.stdout
        for command in (["deadletters"], ["pause"], ["resume"], ["requeue"], ["reset", "--yes"]):
            done_ = run_scrapy([command[0], "pydocs", *command[1:]], cluster.seed_url, cwd=ZOO)
            assert done_.returncode == 0, (command, done_.stderr[-2000:])
        assert "no crawls" in run_scrapy(["status"], cluster.seed_url, cwd=ZOO).stdout


def sentinel_url(group) -> str:
    hosts = ",".join(f"{h}:{p}" for h, p in group.sentinel_addresses)
    return f"redis+sentinel://{hosts}/{group.service_name}"


def test_sentinel_crawl_with_master_killed(plain, docs, tmp_path):
    with redis_sentinel(tmp_path) as group:
        url = sentinel_url(group)
        failover: list[float] = []

        def kill_master(docs: DocServer) -> None:
            wait_fetched(docs)
            group.wait_ready()
            group.kill9_master()
            at_kill.append(fetched(docs))
            started = time.monotonic()
            group.wait_failover()
            failover.append(time.monotonic() - started)

        at_kill: list[int] = []
        counts, codes, logs = crawl(url, docs, tmp_path, during=kill_master)
        assert at_kill[0] < sum(plain.counts.values()) * 0.6, "killed too late to matter"
        items = export(url, docs, tmp_path)
        refetched = check_complete(plain, counts, codes, logs, items, REFETCH_BOUND)
        print(f"sentinel failover in {failover[0]:.1f}s; {refetched} pages fetched again")


def test_tls_crawl_with_client_certificate(plain, docs, tmp_path):
    with redis_tls(tmp_path) as server:
        files = server.files
        tls = (
            f"CRAWLER_REDIS_SSL_CA_CERTS={files.ca_cert}",
            f"CRAWLER_REDIS_SSL_CERTFILE={files.client_cert}",
            f"CRAWLER_REDIS_SSL_KEYFILE={files.client_key}",
        )
        counts, codes, logs = crawl(server.url, docs, tmp_path, *tls)
        items = export(server.url, docs, tmp_path, *tls)
        check_complete(plain, counts, codes, logs, items)
        # Without the client certificate the server refuses, and says so.
        refused = run_scrapy(
            ["status", "pydocs", "-s", f"CRAWLER_REDIS_SSL_CA_CERTS={files.ca_cert}"],
            server.url,
            cwd=ZOO,
        )
        assert refused.returncode == 1
        assert "cannot reach Redis at rediss://127.0.0.1" in refused.stderr, refused.stderr


def acl_user(server, role: str) -> str:
    """A user with exactly the rules ``scrapy acl`` prints for *role*."""
    done = run_scrapy(["acl", "pydocs", "--role", role], None, cwd=ZOO)
    assert done.returncode == 0, done.stderr
    words = shlex.split(done.stdout.strip())
    assert words[:5] == ["ACL", "SETUSER", f"crawler-{role}", "on", ">PASSWORD"], words
    return str(server.add_user(f"crawler-{role}", f"pw-{role}", words[5:]))


def test_least_privilege_users(plain, docs, tmp_path):
    with redis_acl(tmp_path) as server:
        node, seeder, reader = (acl_user(server, r) for r in ("node", "seeder", "reader"))
        seeded = run_scrapy(["seed", "pydocs", f"{docs.base}/genindex.html"], seeder, cwd=ZOO)
        assert seeded.returncode == 0, seeded.stderr[-2000:]
        counts, codes, logs = crawl(node, docs, tmp_path)  # robots.txt obeyed, shared
        items = export(reader, docs, tmp_path)
        # The seed went to the spider's parse() (as seeds do), and the link to
        # it was then a duplicate: its page has no parse_page item.
        seeded_page = f"{docs.base}/genindex.html"
        titles = {url: t for url, t in plain.titles.items() if url != seeded_page}
        check_complete(Oracle(plain.counts, titles), counts, codes, logs, items)
        # Another crawl's keys are out of the seeder's reach.
        other = run_scrapy(
            ["seed", "pydocs", seeded_page, "-s", "CRAWLER_CRAWL_NAME=other"], seeder, cwd=ZOO
        )
        assert other.returncode == 1 and "--role seeder" in other.stderr, other.stderr[-2000:]
        status = run_scrapy(["status", "pydocs"], reader, cwd=ZOO)
        assert status.returncode == 0 and "done" in status.stdout, status.stderr[-2000:]
        listed = run_scrapy(["crawls"], reader, cwd=ZOO)
        assert listed.returncode == 0 and "finished" in listed.stdout, listed.stderr[-2000:]
        # A follower writes its cursor: the reader is refused, the follower
        # (trimming too) writes every item once.
        out = str(tmp_path / "followed.jsonl")
        denied = run_scrapy(
            ["export", "pydocs", "-o", out, "--follow"], reader, cwd=ZOO, ZOO_SITE=docs.base
        )
        assert denied.returncode == 1
        assert "scrapy acl SPIDER --role follower" in denied.stderr, denied.stderr[-2000:]
        follower = acl_user(server, "follower")
        follow = ["export", "pydocs", "-o", out, "--follow", "-s", "CRAWLER_EXPORT_TRIM=True"]
        followed = run_scrapy(follow, follower, cwd=ZOO, ZOO_SITE=docs.base)
        assert followed.returncode == 0, followed.stderr[-2000:]
        assert sorted(map(json.dumps, read_jsonl(Path(out)))) == sorted(map(json.dumps, items))

        # Each role fails with a clear message where it has no rights.
        denied = run_scrapy(["seed", "pydocs", f"{docs.base}/x.html"], reader, cwd=ZOO)
        assert denied.returncode == 1
        assert "scrapy acl SPIDER --role seeder" in denied.stderr, denied.stderr[-2000:]
        denied = run_scrapy(["reset", "pydocs", "--yes"], reader, cwd=ZOO)
        assert denied.returncode == 1
        assert "--role admin" in denied.stderr, denied.stderr[-2000:]
        assert server.admin().exists("{pydocs}:stats")  # nothing was deleted

        # A node whose user lacks one command its scripts call stops, exit 1.
        rules = shlex.split(run_scrapy(["acl", "pydocs", "--role", "node"], None, cwd=ZOO).stdout)
        crippled = server.add_user("crippled", "pw", [r for r in rules[5:] if r != "+lpop"])
        admin_url = server.url.replace("//", "//:admin-s3cret@")
        run_scrapy(["reset", "pydocs", "--yes"], admin_url, cwd=ZOO)
        log = tmp_path / "crippled.log"
        proc = _node(crippled, log, (), {"ZOO_SITE": docs.base})
        assert proc.wait(timeout=120) == 1
        text = log.read_text()
        assert "Redis refused a command this node needs" in text, problems([text])
        assert "scrapy acl SPIDER --role node" in text


def test_writes_refused_for_want_of_replicas_are_held_not_lost(plain, docs, tmp_path):
    """``min-replicas-to-write`` with its replica gone: Redis refuses every
    write (NOREPLICAS) for a while. The nodes hold their writes and go on
    when it accepts them again; nothing is dead-lettered or fetched twice."""
    with redis_server(tmp_path) as server:
        url = f"redis://127.0.0.1:{server.port}"
        refused: list[float] = []

        def refuse_writes(docs: DocServer) -> None:
            wait_fetched(docs)
            server.client().config_set("min-replicas-to-write", 1)
            refused.append(fetched(docs))
            time.sleep(4)
            server.client().config_set("min-replicas-to-write", 0)

        counts, codes, logs = crawl(url, docs, tmp_path, during=refuse_writes)
        assert refused[0] < sum(plain.counts.values()) * 0.6, "refused too late to matter"
        items = export(url, docs, tmp_path)
        check_complete(plain, counts, codes, logs, items)
        assert "NOREPLICAS" in "".join(logs)  # the outage was met, and logged
        assert not server.client().llen("{pydocs}:dead")
