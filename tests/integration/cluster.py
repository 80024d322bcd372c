"""A three-node Redis Cluster on loopback, started for the tests that need one."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis as sync_redis


@pytest.fixture(scope="session")
def redis_cluster_url() -> Iterator[str]:
    """The URL of one node of a fresh three-master cluster (no replicas)."""
    binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if binary is None or cli is None:
        pytest.fail("cluster tests need redis-server and redis-cli: run `make test`")
    ports = _cluster_ports(3)
    with tempfile.TemporaryDirectory() as tmp:
        nodes = [
            subprocess.Popen(
                [
                    binary,
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    f"{tmp}/nodes-{port}.conf",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    tmp,
                ],
                stdout=subprocess.DEVNULL,
            )
            for port in ports
        ]
        try:
            for port in ports:
                _wait(lambda port=port: _ask(port, "PING"))
            subprocess.run(
                [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
                 "--cluster-replicas", "0", "--cluster-yes"],
                check=True, stdout=subprocess.DEVNULL,
            )  # fmt: skip
            _wait(lambda: b"cluster_state:ok" in _ask(ports[0], "CLUSTER", "INFO"))
            yield f"redis://127.0.0.1:{ports[0]}/0"
        finally:
            for node in nodes:
                node.terminate()
                node.wait()


def _cluster_ports(count: int) -> list[int]:
    """Free ports whose cluster bus ports (port + 10000) are free too."""
    ports: list[int] = []
    candidate = random.randrange(20_000, 40_000)
    while len(ports) < count:
        candidate += 1
        if _free(candidate) and _free(candidate + 10_000):
            ports.append(candidate)
    return ports


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ask(port: int, *command: str) -> Any:
    with sync_redis.Redis(port=port) as client:
        return client.execute_command(*command)


def _wait(probe: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if probe():  # type: ignore[operator]
                return
        except sync_redis.RedisError as exc:
            error: Exception | None = exc
        else:
            error = None
        if time.monotonic() > deadline:
            raise AssertionError(f"the Redis Cluster did not come up: {error!r}")
        time.sleep(0.05)
