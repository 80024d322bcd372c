"""The redis section's other topologies against real servers: TLS with a password, and
Sentinel. Each starts its own redis-server (and sentinel) on loopback."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.store import Store, connect
from gateway.store.pipelining import Pipeliner
from gateway.store.settings import RedisSentinel, RedisSettings, RedisTLS
from tests.conftest import free_port
from tests.integration.redis_server import RedisServer


def _self_signed(directory: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[RedisServer, int, Path]]:
    cert, key = _self_signed(tmp_path)
    tls_port = free_port()
    server = RedisServer(
        tmp_path, "--tls-port", str(tls_port), "--tls-cert-file", str(cert),
        "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert),
        "--tls-auth-clients", "no", "--requirepass", "pw-from-env",
    )  # fmt: skip
    try:
        server.start()
    except AssertionError as exc:
        if "TLS" in str(exc) or "tls" in str(exc):
            pytest.skip(f"this redis-server has no TLS support: {exc}")
        raise
    server.wait_listening(tls_port)
    yield server, tls_port, cert
    server.kill()


async def test_tls_with_a_password_from_the_environment(
    tls_redis: tuple[RedisServer, int, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, port, cert = tls_redis
    monkeypatch.setenv("TEST_REDIS_PASSWORD", "pw-from-env")
    settings = RedisSettings(
        url=f"rediss://127.0.0.1:{port}/0",
        password_env="TEST_REDIS_PASSWORD",
        tls=RedisTLS(ca_file=str(cert)),
        socket_timeout=1,
        connect_timeout=1,
    )
    store = Store(connect(settings))
    try:
        assert await store.ping()
        key, _ = await store.create_key("tls", balance=42)
        assert await store.balance(key.id) == 42
        # The pipeliner's own connection: the pool's TLS and password, its handshake.
        pipeliner = Pipeliner(store.redis)
        assert await pipeliner.run([("PING",), ("ECHO", "over tls")]) == ["PONG", "over tls"]
        await store.redis.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        assert await pipeliner.run([("ECHO", "again")], idempotent=True) == ["again"]
    finally:
        await store.aclose()
    # The wrong CA: the connection is refused (verification is on by default).
    (cert.parent / "other").mkdir()
    other, _ = _self_signed(cert.parent / "other")
    bad = Store(connect(RedisSettings(
        url=f"rediss://127.0.0.1:{port}/0", password_env="TEST_REDIS_PASSWORD",
        tls=RedisTLS(ca_file=str(other)), socket_timeout=1, connect_timeout=1,
    )))  # fmt: skip
    try:
        assert not await bad.ping()
    finally:
        await bad.aclose()


async def test_sentinel_finds_the_master(tmp_path: Path) -> None:
    master = RedisServer(tmp_path)
    master.start()
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor mymaster 127.0.0.1 {master.port} 1\n"
        "sentinel down-after-milliseconds mymaster 5000\n"
    )
    with (tmp_path / "sentinel.log").open("ab") as log:
        sentinel = subprocess.Popen(  # noqa: ASYNC220 - returns at once
            [master.binary, str(conf), "--sentinel"], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        master.proc, saved = sentinel, master.proc
        master.wait_listening(port)
        master.proc = saved
        settings = RedisSettings(
            url="redis://mymaster/0",
            sentinel=RedisSentinel(master="mymaster", nodes=(f"127.0.0.1:{port}",)),
            socket_timeout=1,
            connect_timeout=1,
        )
        store = Store(connect(settings))
        try:
            key, _ = await store.create_key("via-sentinel", balance=7)
            assert await store.balance(key.id) == 7
            # The pipeliner's own connection goes to the master the Sentinels name.
            pipeliner = Pipeliner(store.redis)
            assert await pipeliner.run([("ROLE",)]) == [["master", 0, []]]
        finally:
            await store.aclose()
    finally:
        sentinel.terminate()
        sentinel.wait(timeout=10)
        master.kill()
