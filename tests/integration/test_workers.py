"""``gateway serve --workers N``: processes sharing a port, restarted when they die."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
from redis import asyncio as aioredis

from gateway.store import Store
from tests.conftest import free_port
from tests.integration.processes import StartProcess
from tests.integration.support import eventually

CONFIG = """
backends:
  echo: {type: echo}
routes:
  echo: {backend: echo, pricing: {input: 1, output: 1}, max_output_tokens: 50}
"""


def workers_of(pid: int) -> set[int]:
    done = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return {int(p) for p in done.stdout.split()}


async def test_workers_share_a_port_and_are_restarted(
    tmp_path: Path, redis_url: str, redis_client: aioredis.Redis
) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(CONFIG)
    port = free_port()
    env = {**os.environ, "GATEWAY_REDIS_URL": redis_url}
    command = [sys.executable, "-m", "gateway", "serve", "--config", str(path)]
    supervisor = subprocess.Popen(  # noqa: ASYNC220 - returns at once
        [*command, "--port", str(port), "--workers", "2", "--log-level", "WARNING"], env=env
    )
    url = f"http://127.0.0.1:{port}"
    store = Store(redis_client)
    key, secret = await store.create_key("w", balance=1_000_000)
    headers = {"Authorization": f"Bearer {secret}"}
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
    try:
        await eventually(lambda: _two(supervisor.pid), within=10)
        async with aiohttp.ClientSession() as http:

            async def answered() -> bool:
                try:
                    async with http.post(f"{url}/v1/chat/completions", json=body,
                                         headers=headers) as r:  # fmt: skip
                        return r.status == 200
                except aiohttp.ClientError:
                    return False

            await eventually(answered, within=10)
            first = workers_of(supervisor.pid)
            os.kill(next(iter(first)), signal.SIGKILL)  # a worker dies
            await eventually(lambda: _replaced(supervisor.pid, first), within=10)
            statuses = await asyncio.gather(*(answered() for _ in range(40)))
            assert all(statuses)
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=30) == 0
        assert not workers_of(supervisor.pid)
        assert await store.held(key.id) == 0
    finally:
        _kill(supervisor)


async def test_workers_drain_when_their_supervisor_is_killed(
    tmp_path: Path, redis_url: str
) -> None:
    """A SIGKILLed supervisor leaves no orphan serving the port: its workers drain."""
    path = tmp_path / "gateway.yaml"
    path.write_text(CONFIG + "shutdown: {drain_delay: 0, grace_period: 1}\n")
    port = free_port()
    env = {**os.environ, "GATEWAY_REDIS_URL": redis_url}
    command = [sys.executable, "-m", "gateway", "serve", "--config", str(path)]
    supervisor = subprocess.Popen(  # noqa: ASYNC220 - returns at once
        [*command, "--port", str(port), "--workers", "2", "--log-level", "WARNING"], env=env
    )
    workers: set[int] = set()
    try:
        await eventually(lambda: _two(supervisor.pid), within=10)
        workers = workers_of(supervisor.pid)
        supervisor.kill()
        supervisor.wait(timeout=10)
        await eventually(lambda: _all_gone(workers), within=15)
    finally:
        _kill(supervisor, workers)


def _kill(supervisor: subprocess.Popen[bytes], workers: set[int] = frozenset()) -> None:
    """Whatever a test left running: the supervisor, its workers, and ``workers``."""
    for pid in workers_of(supervisor.pid) | workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if supervisor.poll() is None:
        supervisor.kill()
        supervisor.wait(timeout=10)


async def _all_gone(pids: set[int]) -> bool:
    return not any(_alive(pid) for pid in pids)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's wait is missing


async def _two(pid: int) -> bool:
    return len(workers_of(pid)) == 2


async def _replaced(pid: int, before: set[int]) -> bool:
    now = workers_of(pid)
    return len(now) == 2 and now != before


def test_workers_refuse_the_embedded_store(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(CONFIG)
    env = {k: v for k, v in os.environ.items() if k != "GATEWAY_REDIS_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--config", str(path), "--workers", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert done.returncode == 1
    assert "embedded store is per process" in done.stderr


async def test_a_second_gateway_on_a_busy_port_fails_to_start(
    tmp_path: Path, gateway_processes: StartProcess, redis_url: str
) -> None:
    # Without --workers a gateway owns its port: with SO_REUSEPORT a second one would
    # start silently and answer half the requests.
    first = await gateway_processes(CONFIG)
    port = int(first.url.rsplit(":", 1)[1])
    path = tmp_path / "second.yaml"
    path.write_text(CONFIG)
    second = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", "--config", str(path),
        "--port", str(port), "--log-level", "WARNING",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "GATEWAY_REDIS_URL": redis_url},
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(second.communicate(), timeout=30)
    finally:
        if second.returncode is None:
            second.kill()
            await second.wait()
    assert second.returncode == 1
    assert err.decode().splitlines() == [
        f"gateway: cannot listen on 127.0.0.1:{port}: address already in use"
    ]
    assert out == b""
    async with aiohttp.ClientSession() as http:  # the first one still has the port alone
        for _ in range(5):
            async with http.get(f"{first.url}/readyz") as response:
                assert response.status == 200
    assert first.proc.poll() is None
