"""One REDIS_URL names any topology: how Sentinel URLs, TLS files and
passwords are read (the topologies themselves: tests/test_topology_crawls.py)."""

from __future__ import annotations

import pytest
import redis
from scrapy.settings import Settings

from crawler.connection import _sentinel_parts, configured_url, is_cluster, redact, with_tls_files
from crawler.exceptions import ConfigError
from crawler.redis_errors import is_transient


def test_a_sentinel_url_names_the_sentinels_the_service_and_the_master_user():
    url = "redis+sentinel://app:s%40cret@10.0.0.1:26379,10.0.0.2,[::1]:26380/mymaster/2"
    service, sentinels, master, sentinel = _sentinel_parts(url + "?sentinel_password=sp")
    assert service == "mymaster"
    assert sentinels == [("10.0.0.1", 26379), ("10.0.0.2", 26379), ("::1", 26380)]
    assert master["db"] == 2 and master["username"] == "app" and master["password"] == "s@cret"
    assert sentinel["password"] == "sp" and "ssl" not in sentinel


def test_rediss_sentinel_speaks_tls_to_master_and_sentinels(tmp_path):
    url = f"rediss+sentinel://h:26379/svc?ssl_ca_certs={tmp_path}/ca.pem&ssl_check_hostname=false"
    _, _, master, sentinel = _sentinel_parts(url)
    for kwargs in (master, sentinel):
        assert kwargs["ssl"] is True and kwargs["ssl_ca_certs"] == f"{tmp_path}/ca.pem"
        assert kwargs["ssl_check_hostname"] is False


@pytest.mark.parametrize(
    "url, message",
    [
        ("redis+sentinel://h:26379", "name the master's service"),
        ("redis+sentinel://h:26379/a/b/c", "name the master's service"),
        ("redis+sentinel://h:port/svc", "bad sentinel address 'h:port'"),
    ],
)
def test_a_bad_sentinel_url_says_what_to_write(url, message):
    with pytest.raises(ConfigError, match=message):
        _sentinel_parts(url)


def test_passwords_are_redacted_from_every_form():
    assert redact("redis+sentinel://u:pw@h1:1,h2:2/m") == "redis+sentinel://u:***@h1:1,h2:2/m"
    assert redact("redis://:pa/ss@h:6379/0") == "redis://:***@h:6379/0"  # "/" in it
    assert redact("rediss://h:1/0?ssl_password=kp&x=1").endswith("?ssl_password=***&x=1")
    assert redact("rediss://:pw@h:6380/0") == "rediss://:***@h:6380/0"
    query = redact("redis+sentinel://h:1/m?sentinel_password=sp&x=1").split("?")[1]
    assert query == "sentinel_password=***&x=1"


def test_tls_files_come_from_settings_and_need_a_tls_url(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here")
    settings = Settings({"CRAWLER_REDIS_SSL_CA_CERTS": str(ca)})
    assert with_tls_files("rediss://h:6380/0", settings).endswith(
        f"?ssl_ca_certs={ca}".replace("/", "%2F")
    )
    with pytest.raises(ConfigError, match="use rediss://"):
        with_tls_files("redis://h:6379/0", settings)
    settings = Settings({"CRAWLER_REDIS_SSL_CERTFILE": str(tmp_path / "missing.pem")})
    with pytest.raises(ConfigError, match=r"ssl_certfile = .*missing\.pem.*no such file"):
        with_tls_files("rediss://h:6380/0", settings)
    # Options that are not files are passed on, not looked up on disk.
    settings = Settings({"REDIS_PARAMS": {"ssl_cert_reqs": "none", "ssl_check_hostname": False}})
    query = with_tls_files("rediss://h:6380/0", settings).split("?")[1]
    assert query == "ssl_cert_reqs=none&ssl_check_hostname=false"
    # scrapy-redis's REDIS_PARAMS are read too; the URL's own query wins.
    settings = Settings({"REDIS_URL": "rediss://h:6380/0?ssl_ca_certs=url.pem"})
    settings.set("REDIS_PARAMS", {"ssl_ca_certs": str(ca)})
    assert configured_url(settings) == "rediss://h:6380/0?ssl_ca_certs=url.pem"


def test_a_single_server_is_not_taken_for_a_cluster(redis_url):
    assert not is_cluster(redis_url)
    assert not is_cluster("redis://127.0.0.1:1/0")  # unreachable: check_reachable says so


def test_a_write_refused_inside_a_script_is_an_outage(rclient):
    """Redis 6 (the private local server) wraps an error a script met as
    "Error running script ...: -NOREPLICAS ...": still an outage, so writes
    are held and retried, never split or dead-lettered."""
    rclient.config_set("min-replicas-to-write", 1)
    try:
        with pytest.raises(redis.ResponseError) as refused:
            rclient.eval("return redis.call('SET', KEYS[1], 1)", 1, "{t}:x")
    finally:
        rclient.config_set("min-replicas-to-write", 0)
    assert "NOREPLICAS" in str(refused.value)
    assert is_transient(refused.value)
    assert not is_transient(redis.ResponseError("Error running script: -ERR wrong number"))


@pytest.mark.parametrize(
    "settings",
    [
        {"REDIS_PORT": 7781},
        {"REDIS_HOST": "10.0.0.5"},
        {"REDIS_HOST": "10.0.0.5", "REDIS_PORT": "7781"},
        {"REDIS_PARAMS": {"host": "10.0.0.5", "port": 7781}},
        {"REDIS_PARAMS": {"port": 7781}},
        {"REDIS_PARAMS": {"host": "10.0.0.6"}, "REDIS_HOST": "10.0.0.5"},
        {"REDIS_PARAMS": {"url": "redis://10.0.0.7:7000/0"}},
        {"REDIS_PARAMS": {"url": "redis://10.0.0.7:7000/0"}, "REDIS_HOST": "10.0.0.5"},
        {"REDIS_PARAMS": {"url": "redis://10.0.0.7:7000/0", "port": 7001}},
    ],
)
def test_the_redis_settings_name_the_server_scrapy_redis_connects_to(settings, monkeypatch):
    """REDIS_PORT alone, or REDIS_PARAMS's host, port or url, named no
    server here: the node started the private local Redis, crawled nothing
    and exited 0, where scrapy-redis connects to the server they name
    (helper 38)."""
    from scrapy_redis.connection import get_redis_from_settings

    monkeypatch.delenv("REDIS_URL", raising=False)
    ours = redis.Redis.from_url(configured_url(Settings(settings)))
    theirs = get_redis_from_settings(Settings(settings))
    want = theirs.connection_pool.connection_kwargs
    got = ours.connection_pool.connection_kwargs
    assert (got["host"], int(got["port"])) == (want["host"], int(want["port"]))


def test_no_sentinel_answering_is_said_shortly():
    """redis-py's text for a Sentinel without a master carries the repr of
    every sentinel client (helper 40); said in one line instead."""
    from crawler.connection import check_reachable
    from crawler.exceptions import RedisUnavailable
    from tests.conftest import free_port

    with pytest.raises(RedisUnavailable) as raised:
        check_reachable(f"redis+sentinel://127.0.0.1:{free_port()}/mymaster")
    message = str(raised.value)
    assert "no sentinel named a master for service 'mymaster'" in message
    assert "ConnectionPool" not in message and "<redis" not in message
