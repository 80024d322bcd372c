"""The cost of keeping conversations: an Open Responses request with storage on, sealed at
rest (``responses.encryption``) or not.

Two gateways in this process, on loopback against the real Redis and the echo
backend: one plain, one encrypting. The same non-streamed request (a prompt of
about 2 KB, stored, as by default) is sent one at a time, alternating between
them, and timed at the client: the stored value is written before the answer is
sent, so its sealing is on the request's critical path. The sealing alone
(``ContentCipher.seal`` then ``open`` of a value that size) is timed too.

``python -m bench.storage`` (with ``GATEWAY_TEST_REDIS_URL``) prints the line
``make bench`` prints.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import statistics
import sys
import time
from dataclasses import dataclass

import aiohttp
import orjson
from aiohttp import web

from gateway.config import parse_config
from gateway.server.app import create_app
from gateway.server.connection import GatewayRunner
from gateway.server.keys import GATEWAY
from gateway.store.cipher import ContentCipher
from gateway.store.responses import StoredResponse, encode

KEY_ENV = "GW_BENCH_CONTENT_KEY"
CONFIG = """
backends:
  echo: {type: echo}
routes:
  echo: {backend: echo}
"""
PROMPT = " ".join(f"word{n}" for n in range(300))  # about 2 KB, echoed back


@dataclass(frozen=True)
class StorageCost:
    rounds: int
    plain_p50_us: float
    plain_mean_us: float
    encrypted_p50_us: float
    encrypted_mean_us: float
    seal_open_us: float  # sealing and opening one stored value alone
    value_bytes: int  # the size of that value before sealing


def measure(redis_url: str, rounds: int = 1000) -> StorageCost:
    return asyncio.run(_measure(redis_url, rounds))


async def _start(text: str, redis_url: str) -> tuple[web.AppRunner, str, str]:
    config = parse_config(text, "bench-storage.yaml")
    config = dataclasses.replace(config, redis=dataclasses.replace(config.redis, url=redis_url))
    app = create_app(config)
    runner = GatewayRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    _, secret = await app[GATEWAY].store.create_key("bench-storage", balance=10**12)
    return runner, f"http://127.0.0.1:{port}/v1/responses", secret


async def _one(http: aiohttp.ClientSession, url: str, secret: str) -> float:
    body = orjson.dumps({"model": "echo", "input": PROMPT})
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    started = time.perf_counter()
    async with http.post(url, data=body, headers=headers) as r:
        answer = await r.read()
        assert r.status == 200, answer[:200]
    return (time.perf_counter() - started) * 1e6


async def _measure(redis_url: str, rounds: int) -> StorageCost:
    os.environ.setdefault(KEY_ENV, base64.b64encode(os.urandom(32)).decode())
    plain = await _start(CONFIG, redis_url)
    sealed = await _start(
        f"responses: {{encryption: {{key_env: {KEY_ENV}}}}}\n" + CONFIG, redis_url
    )
    times: dict[str, list[float]] = {"plain": [], "encrypted": []}
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(50):  # warm both: connections, caches, scripts
                await _one(http, plain[1], plain[2])
                await _one(http, sealed[1], sealed[2])
            for _ in range(rounds):
                times["plain"].append(await _one(http, plain[1], plain[2]))
                times["encrypted"].append(await _one(http, sealed[1], sealed[2]))
    finally:
        await plain[0].cleanup()
        await sealed[0].cleanup()
    value = encode(
        StoredResponse(
            {"id": "resp_x", "output": [{"type": "message", "content": PROMPT}]},
            [{"type": "message", "role": "user", "content": PROMPT}],
        )
    )
    cipher = ContentCipher(os.urandom(32))
    binding = "gw:{key_x}:response:resp_x"
    started = time.perf_counter()
    for _ in range(rounds):
        cipher.open(cipher.seal(value, binding), binding)
    seal_open = (time.perf_counter() - started) * 1e6 / rounds
    return StorageCost(
        rounds,
        statistics.median(times["plain"]),
        statistics.fmean(times["plain"]),
        statistics.median(times["encrypted"]),
        statistics.fmean(times["encrypted"]),
        seal_open,
        len(value),
    )


def line(cost: StorageCost) -> str:
    added = cost.encrypted_p50_us - cost.plain_p50_us
    return (
        f"storage ({cost.rounds} stored Open Responses requests each, one at a time): "
        f"plain p50 {cost.plain_p50_us:.0f} us (mean {cost.plain_mean_us:.0f}), encrypted "
        f"p50 {cost.encrypted_p50_us:.0f} us (mean {cost.encrypted_mean_us:.0f}): "
        f"{added:+.0f} us a request; sealing and opening a {cost.value_bytes:,}-byte value "
        f"alone {cost.seal_open_us:.1f} us"
    )


if __name__ == "__main__":
    url = os.environ.get("GATEWAY_TEST_REDIS_URL")
    if not url:
        print(
            "bench.storage: set GATEWAY_TEST_REDIS_URL (tests/with-redis.sh does)", file=sys.stderr
        )
        raise SystemExit(2)
    print(line(measure(url, int(sys.argv[1]) if len(sys.argv) > 1 else 1000)))
