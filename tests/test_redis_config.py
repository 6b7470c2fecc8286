"""Which Redis a node uses: the private local server, or REDIS_URL with ACL
credentials that never reach the logs."""

from __future__ import annotations

import shutil
import subprocess

from crawler.localredis import socket_path
from tests.conftest import REDIS_CLI, ROOT, run_scrapy, start_node


def test_zero_config_starts_and_shares_a_local_server(make_site, tmp_path):
    project = tmp_path / "proj"
    project.mkdir()
    shutil.copy(ROOT / "scrapy.cfg", project / "scrapy.cfg")
    site = make_site(30)
    # In the project, or under /tmp when that path is too long for a socket.
    sock = socket_path(project / ".crawler" / "redis")
    try:
        seeded = run_scrapy(["seed", "site", site.url("/page/0.html")], None, cwd=project)
        assert seeded.returncode == 0, seeded.stderr
        assert f"on unix://{sock}: 1 queued" in seeded.stdout
        assert (project / ".crawler" / "redis" / "appendonly.aof").exists()
        depth = subprocess.run(
            [REDIS_CLI, "-s", str(sock), "config", "get", "list-compress-depth"],
            capture_output=True,
            text=True,
        )
        assert depth.stdout.split() == ["list-compress-depth", "1"]  # queues compressed
        logs = [tmp_path / "a.log", tmp_path / "b.log"]
        nodes = [start_node("site", None, log, cwd=project) for log in logs]
        assert [n.wait(timeout=120) for n in nodes] == [0, 0]
        for log in logs:
            text = log.read_text()
            assert f"private local Redis at unix://{sock}" in text
            assert "Spider closed (finished)" in text
        assert len(site.page_counts()) == 30 and set(site.page_counts().values()) == {1}
        out = tmp_path / "items.jsonl"
        exported = run_scrapy(["export", "site", "-o", str(out)], None, cwd=project)
        assert exported.returncode == 0, exported.stderr
        assert len(out.read_text().splitlines()) == 30
    finally:
        subprocess.run([REDIS_CLI, "-s", str(sock), "shutdown", "nosave"], capture_output=True)


def test_acl_password_never_appears_in_logs(make_site, redis_url, rclient, tmp_path):
    rclient.execute_command("ACL", "SETUSER", "crawler", "on", ">s3cret-pw", "~*", "&*", "+@all")
    try:
        port = rclient.connection_pool.connection_kwargs["port"]
        url = f"redis://crawler:s3cret-pw@127.0.0.1:{port}/0"
        site = make_site(10)
        seeded = run_scrapy(["seed", "site", site.url("/page/0.html")], url)
        assert seeded.returncode == 0, seeded.stderr
        assert f"redis://crawler:***@127.0.0.1:{port}/0" in seeded.stdout
        log = tmp_path / "node.log"
        # Given both ways: in the environment and as a setting Scrapy logs.
        node = start_node("site", url, log, f"REDIS_URL={url}")
        assert node.wait(timeout=120) == 0
        text = log.read_text()
        assert len(site.page_counts()) == 10
        assert "crawler:***@" in text
        assert "s3cret-pw" not in text + seeded.stdout + seeded.stderr
        wrong = run_scrapy(["seed", "site", "http://a.test/"], url.replace("s3cret-pw", "nope-pw"))
        assert wrong.returncode == 1 and "nope-pw" not in wrong.stderr
        assert "cannot reach Redis at redis://crawler:***@" in wrong.stderr
    finally:
        rclient.execute_command("ACL", "DELUSER", "crawler")
