"""Redis security for real: the ACL user of docs/operations.md (only the commands and keys edgegrad needs)
runs the whole service, and TLS to Redis (rediss://, a CA file) works for `edgegrad up`, its server and workers."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis
from redis_process import RedisProcess, free_port
from redis_workload import exercise

from edgegrad.server.cluster import Cluster

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "admin-secret"
PASSWORD = "edgegrad-secret"


def documented_acl(prefix: str) -> str:
    """The ACL line docs/operations.md gives, for key prefix ``prefix`` and the test's password."""
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.startswith("user edgegrad on ")]
    assert len(lines) == 1, "docs/operations.md must give exactly one 'user edgegrad on ...' ACL line"
    return lines[0].replace(">CHANGE-ME", f">{PASSWORD}").replace("~edgegrad:*", f"~{prefix}:*")


def _acl_file(folder: Path, prefix: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "users.acl"
    path.write_text(f"user default on >{ADMIN} ~* &* +@all\n{documented_acl(prefix)}\n")
    return path


def _denied(admin: redis.Redis) -> list:
    return [(e[b"reason"], e[b"object"]) if isinstance(e, dict) and b"reason" in e else e
            for e in admin.acl_log()]


def test_the_documented_acl_user_runs_the_whole_service(namespace, tmp_path) -> None:
    base = namespace("acl", max_message_bytes=1 << 20)
    acl = _acl_file(tmp_path / "redis", base.key_prefix)
    with RedisProcess(tmp_path / "redis", "--aclfile", str(acl), ping={"password": ADMIN}) as server:
        settings = base.with_(redis_url=f"redis://edgegrad:{PASSWORD}@127.0.0.1:{server.port}/0")
        admin = redis.Redis(port=server.port, password=ADMIN)
        with Cluster(settings, workers=2, log=sys.stderr) as cluster:
            cluster.wait_for_workers()
            exercise(cluster.address)
            cluster.kill_worker(0)  # the other worker's clean-up of a dead worker's registrations
            time.sleep(2.5)
        assert admin.acl_log() == [], _denied(admin)
        restricted = redis.Redis(port=server.port, username="edgegrad", password=PASSWORD)
        with pytest.raises(redis.exceptions.NoPermissionError):
            restricted.set("someone-else:key", "x")  # a key outside edgegrad's and rq's
        with pytest.raises(redis.exceptions.NoPermissionError):
            restricted.flushall()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=server.port, username="edgegrad", password="wrong").ping()


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate it signed for 127.0.0.1 / localhost: (ca.pem, server.pem, server.key)."""
    folder.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=edgegrad test CA", cwd=folder)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=localhost", cwd=folder)
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.pem", "-days", "2", "-extfile", "san.ext", cwd=folder)
    return folder / "ca.pem", folder / "server.pem", folder / "server.key"


def test_edgegrad_up_server_and_workers_reach_redis_over_tls_as_the_acl_user(namespace, tmp_path) -> None:
    if not shutil.which("openssl"):
        pytest.skip("no openssl binary to make certificates with")
    ca, cert, key = _certificates(tmp_path / "tls")
    base = namespace("tls")
    acl = _acl_file(tmp_path / "redis", base.key_prefix)
    port = free_port()
    tls = ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
           "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no", "--aclfile", str(acl)]
    ping = {"password": ADMIN, "ssl": True, "ssl_ca_certs": str(ca)}
    server = RedisProcess(tmp_path / "redis", *tls, port=port, ping=ping)
    try:
        server.start()
    except RuntimeError as exc:
        if re.search(r"bad directive|not supported|built without", str(exc), re.IGNORECASE):
            pytest.skip(f"this redis-server cannot serve TLS: {exc}")
        raise
    with server:
        url = f"rediss://edgegrad:{PASSWORD}@127.0.0.1:{port}/0"
        env = {k: v for k, v in os.environ.items() if k != "REDIS_URL" and not k.startswith("EDGEGRAD_")}
        env.update(EDGEGRAD_KEY_PREFIX=base.key_prefix, EDGEGRAD_QUEUE=base.queue, EDGEGRAD_REDIS_CA_FILE=str(ca),
                   EDGEGRAD_MAX_MESSAGE_BYTES=str(1 << 20))
        up = subprocess.Popen([sys.executable, "-m", "edgegrad", "up", "--port", "0", "--workers", "1",
                               "--redis-url", url], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
        errors: list[str] = []
        threading.Thread(target=lambda: errors.extend(up.stderr), daemon=True).start()
        try:
            first = up.stdout.readline()
            match = re.match(r"edgegrad listening on (\S+:\d+) .*redis rediss://\*\*\*@127\.0\.0\.1", first)
            assert match, (first, "".join(errors)[-3000:])
            exercise(match.group(1))
            admin = redis.Redis(port=port, password=ADMIN, ssl=True, ssl_ca_certs=str(ca))
            assert admin.acl_log() == [], _denied(admin)
            assert PASSWORD not in first
            with pytest.raises(redis.ConnectionError):  # the CA file is what makes the certificate trusted
                redis.Redis(port=port, username="edgegrad", password=PASSWORD, ssl=True, socket_timeout=5).ping()
        finally:
            up.terminate()
            assert up.wait(30) == 0, "".join(errors)[-3000:]


def test_a_ca_file_without_tls_is_refused_not_ignored() -> None:
    from edgegrad.errors import InvalidInput
    from edgegrad.settings import Settings

    with pytest.raises(InvalidInput, match="EDGEGRAD_REDIS_CA_FILE: only meaningful with TLS"):
        Settings.from_env({"REDIS_URL": "redis://127.0.0.1:6379/0", "EDGEGRAD_REDIS_CA_FILE": "/etc/ca.pem"})
    assert Settings.from_env({"REDIS_URL": "rediss://h:6380/0", "EDGEGRAD_REDIS_CA_FILE": "/etc/ca.pem"}).redis_ca_file
