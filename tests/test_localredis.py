"""The private local Redis never joins a server someone else placed: its
socket lives in the project or in a directory only this user can use."""

from __future__ import annotations

import os
import socket

import pytest

from crawler import localredis
from crawler.exceptions import LocalRedisError


def long_dir(tmp_path):
    deep = tmp_path / ("x" * 100)
    deep.mkdir()
    return deep


def test_long_project_path_uses_a_private_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(localredis.tempfile, "tempdir", None)
    sock = localredis.socket_path(long_dir(tmp_path))
    assert sock.parent == tmp_path / f"crawler-redis-{os.getuid()}"
    assert sock.parent.stat().st_mode & 0o777 == 0o700


def test_a_directory_others_can_write_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(localredis.tempfile, "tempdir", None)
    shared = tmp_path / f"crawler-redis-{os.getuid()}"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    with pytest.raises(LocalRedisError, match="not a directory only this user can use"):
        localredis.socket_path(long_dir(tmp_path))


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give a socket to another user")
def test_a_socket_of_another_user_is_never_joined(tmp_path):
    path = tmp_path / "redis.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen()
    try:
        os.chown(path, 65534, 65534)
        assert localredis._alive(path) is False  # not even asked for PING
    finally:
        listener.close()
