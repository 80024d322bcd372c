"""Real ``gateway serve`` processes on loopback, sharing one Redis, for tests."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import IO

import aiohttp
import pytest

from tests.conftest import free_port


class GatewayProcess:
    def __init__(self, proc: subprocess.Popen[bytes], url: str) -> None:
        self.proc = proc
        self.url = url

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to settle anything."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


StartProcess = Callable[[str], Awaitable[GatewayProcess]]


async def serve(
    path: Path,
    redis_url: str,
    env: Mapping[str, str] | None = None,
    *,
    log_level: str = "WARNING",
    log: IO[bytes] | None = None,
) -> GatewayProcess:
    """``gateway serve --config path`` on a free port, once it answers ``/readyz``
    (stopped again if it never does); its log (JSON lines) goes to ``log`` if given."""
    port = free_port()
    command = [sys.executable, "-m", "gateway", "serve", "--config", str(path)]
    # Popen returns at once: starting a process does not block the loop.
    proc = subprocess.Popen(  # noqa: ASYNC220
        [*command, "--port", str(port), "--log-level", log_level, "--log-format", "json"],
        env={**os.environ, "GATEWAY_REDIS_URL": redis_url, **(env or {})},
        stderr=log,
    )
    process = GatewayProcess(proc, f"http://127.0.0.1:{port}")
    try:
        await _ready(process.url, proc)
    except BaseException:
        process.stop()
        raise
    return process


async def _ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            if proc.poll() is not None:
                raise AssertionError(f"gateway exited with {proc.returncode}")
            try:
                async with http.get(f"{url}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("gateway did not become ready")


@pytest.fixture
async def gateway_processes(
    tmp_path: Path, redis_url: str, redis_client: object
) -> AsyncIterator[StartProcess]:
    """Start ``gateway serve`` processes on the test Redis; each call takes gateway.yaml text."""
    started: list[GatewayProcess] = []

    async def start(config: str, *, redis: str | None = None) -> GatewayProcess:
        path = tmp_path / f"gateway-{len(started)}.yaml"
        path.write_text(config)
        process = await serve(path, redis or redis_url)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
