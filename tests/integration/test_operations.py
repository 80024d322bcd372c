"""Operating a real ``gateway serve`` process: live reload of gateway.yaml (as a
Kubernetes ConfigMap updates it, by swapping a symlink) and draining on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest
from redis import asyncio as aioredis

from gateway.logs import JsonFormatter
from gateway.store import Store
from tests.conftest import StartGateway, free_port
from tests.integration.processes import serve
from tests.integration.support import eventually

CONFIG = """
backends:
  slow: {{type: echo, chunk_delay: {delay}}}
routes:
{routes}
shutdown: {{drain_delay: 0.2, grace_period: {grace}}}
metering: {{lease_seconds: 30}}
"""

TEXT = " ".join(f"w{i}" for i in range(20))


def routes(*agents: str) -> str:
    return "".join(
        f"  {a}: {{backend: slow, pricing: {{input: 1, output: 2}}, max_output_tokens: 50}}\n"
        for a in agents
    )


class ConfigMap:
    """A folder laid out as the kubelet lays out a ConfigMap volume, updated the same way."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.version = 0
        (root / "gateway.yaml").symlink_to("..data/gateway.yaml")

    @property
    def path(self) -> Path:
        return self.root / "gateway.yaml"

    def publish(self, text: str) -> None:
        self.version += 1
        folder = self.root / f"..{self.version}"
        folder.mkdir()
        (folder / "gateway.yaml").write_text(text)
        link = self.root / "..data_tmp"
        link.symlink_to(folder.name)
        os.replace(link, self.root / "..data")  # the atomic swap the kubelet does


async def start(path: Path, redis_url: str) -> tuple[subprocess.Popen[bytes], str]:
    process = await serve(path, redis_url)
    return process.proc, process.url


async def ask(http: aiohttp.ClientSession, url: str, secret: str, agent: str) -> int:
    body = {"model": agent, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {secret}"}
    async with http.post(f"{url}/v1/chat/completions", json=body, headers=headers) as r:
        await r.read()
        return r.status


async def stream(http: aiohttp.ClientSession, url: str, secret: str, agent: str) -> list[bytes]:
    """A streamed request read to its end; its frames."""
    body = {"model": agent, "stream": True, "messages": [{"role": "user", "content": TEXT}]}
    headers = {"Authorization": f"Bearer {secret}"}
    async with http.post(f"{url}/v1/chat/completions", json=body, headers=headers) as r:
        assert r.status == 200
        return [line async for line in r.content if line.startswith(b"data: ")]


async def test_reload_under_load(
    tmp_path: Path, redis_url: str, redis_client: aioredis.Redis
) -> None:
    configmap = ConfigMap(tmp_path)
    configmap.publish(CONFIG.format(delay=0.1, grace=5, routes=routes("old", "kept")))
    proc, url = await start(configmap.path, redis_url)
    store = Store(redis_client)
    _, secret = await store.create_key("ops", balance=10_000_000)
    try:
        async with aiohttp.ClientSession() as http:
            running = [asyncio.create_task(stream(http, url, secret, "old")) for _ in range(5)]
            await asyncio.sleep(0.3)
            configmap.publish(CONFIG.format(delay=0.1, grace=5, routes=routes("kept", "new")))
            swapped = time.monotonic()

            async def new_route_served() -> bool:
                return await ask(http, url, secret, "new") == 200

            await eventually(new_route_served, within=3)
            assert time.monotonic() - swapped < 1.5
            assert await ask(http, url, secret, "old") == 404  # removed for new requests
            for frames in await asyncio.gather(*running):  # in flight: finished on the old one
                assert frames[-1] == b"data: [DONE]\n" and b'"error"' not in b"".join(frames)

            configmap.publish("routes: [this is not a mapping\n")
            await asyncio.sleep(1.5)
            async with http.get(f"{url}/readyz") as r:
                config = (await r.json())["config"]
            assert config["problems"] and "invalid YAML" in config["problems"][0]
            assert await ask(http, url, secret, "new") == 200  # the old one keeps serving

            (configmap.root / f"..{configmap.version}" / "gateway.yaml").write_text(
                CONFIG.format(delay=0.1, grace=5, routes=routes("after-hup"))
            )
            proc.send_signal(signal.SIGHUP)

            async def hup_applied() -> bool:
                return await ask(http, url, secret, "after-hup") == 200

            await eventually(hup_applied, within=3)
            async with http.get(f"{url}/readyz") as r:
                config = (await r.json())["config"]
            assert config["problems"] == [] and config["reloads"] == 2
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0


async def test_sigterm_lets_streams_finish_and_settles_them(
    tmp_path: Path, redis_url: str, redis_client: aioredis.Redis
) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(CONFIG.format(delay=0.05, grace=10, routes=routes("slow")))
    proc, url = await start(path, redis_url)
    store = Store(redis_client)
    key, secret = await store.create_key("drain", balance=10_000_000)
    async with aiohttp.ClientSession() as http:
        running = [asyncio.create_task(stream(http, url, secret, "slow")) for _ in range(50)]
        await eventually(lambda: _held(store, key.id), within=5)
        proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.1)
        async with http.get(f"{url}/readyz") as r:
            assert r.status == 503 and (await r.json())["status"] == "draining"
        results = await asyncio.gather(*running)
    assert proc.wait(timeout=20) == 0
    assert all(frames[-1] == b"data: [DONE]\n" for frames in results)
    assert not any(b'"error"' in b"".join(frames) for frames in results)  # all completed
    await _all_settled(store, key.id, 50)


async def test_a_second_sigterm_ends_streams_with_a_terminal_event(
    tmp_path: Path, redis_url: str, redis_client: aioredis.Redis
) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(CONFIG.format(delay=0.2, grace=30, routes=routes("slow")))
    proc, url = await start(path, redis_url)
    store = Store(redis_client)
    key, secret = await store.create_key("hurry", balance=10_000_000)
    async with aiohttp.ClientSession() as http:
        running = [asyncio.create_task(stream(http, url, secret, "slow")) for _ in range(20)]
        await eventually(lambda: _held(store, key.id), within=5)
        await asyncio.sleep(1.0)  # every stream is under way (20 words, one per 0.2 s)
        proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        proc.send_signal(signal.SIGTERM)  # do not wait the 30 s grace period
        results = await asyncio.gather(*running)
    assert proc.wait(timeout=20) == 0
    for frames in results:  # ended cleanly: an error chunk, then [DONE]; not a cut connection
        assert frames[-1] == b"data: [DONE]\n"
        assert b"shutting down" in frames[-2]
    await _all_settled(store, key.id, 20)


async def _held(store: Store, key_id: str) -> bool:
    return await store.held(key_id) > 0


async def _all_settled(store: Store, key_id: str, count: int) -> None:
    assert await store.held(key_id) == 0
    usage = [e for e in await store.ledger(key_id) if e.kind == "usage"]
    assert len(usage) == count and all(e.usage and e.usage.output_tokens > 0 for e in usage)
    assert sum(e.amount for e in await store.ledger(key_id)) == await store.balance(key_id)


async def test_serve_puts_the_admin_api_on_its_own_listener(
    tmp_path: Path, redis_url: str, redis_client: aioredis.Redis
) -> None:
    admin_port = free_port()
    path = tmp_path / "gateway.yaml"
    path.write_text(
        CONFIG.format(delay=0, grace=5, routes=routes("slow"))
        + "admin:\n  token_env: OPS_ADMIN_TOKEN\n"
        + f"  listen: {{host: 127.0.0.1, port: {admin_port}}}\n"
    )
    os.environ["OPS_ADMIN_TOKEN"] = "ops-secret-token"
    try:
        proc, url = await start(path, redis_url)
    finally:
        del os.environ["OPS_ADMIN_TOKEN"]
    headers = {"Authorization": "Bearer ops-secret-token"}
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{admin_port}/admin/keys", headers=headers) as r:
                assert r.status == 200
            async with http.get(f"{url}/admin/keys", headers=headers) as r:
                assert r.status == 404  # not on the public listener
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0


async def test_an_access_log_line_per_request_by_default(
    start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    gw = await start_gateway()  # no filters in the file
    key, secret = await gw.new_key_record()
    chat = f"{gw.url}/v1/chat/completions"
    headers = {"Authorization": f"Bearer {secret}"}
    with caplog.at_level(logging.INFO, logger="gateway.requests"):
        async with aiohttp.ClientSession() as http:
            for stream in (False, True):
                body = {
                    "model": "echo",
                    "stream": stream,
                    "messages": [{"role": "user", "content": "secret plans"}],
                }
                async with http.post(chat, json=body, headers=headers) as r:
                    assert r.status == 200
                    await r.read()
        await asyncio.sleep(0.1)  # the line is written when the stream ends
    records = [r for r in caplog.records if r.name == "gateway.requests"]
    assert len(records) == 2  # one each, not doubled
    for record in records:
        raw = JsonFormatter().format(record)
        assert "\n" not in raw and secret not in raw and "plans" not in raw
        line = json.loads(raw)
        assert line["key_id"] == key.id and line["agent"] == "echo"
        assert (line["backend"], line["status"], line["outcome"]) == ("echo", 200, "completed")
        assert line["request_id"] and line["duration_ms"] >= 0
        assert line["input_tokens"] > 0 and line["output_tokens"] == 2
        assert line["credits"] > 0


async def test_a_request_refused_before_any_backend_has_its_access_log_line(
    start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    """401, 404, 402: no backend ran, so the gateway writes the line itself (once)."""
    gw = await start_gateway()
    key, secret = await gw.new_key_record()
    poor, poor_secret = await gw.new_key_record(balance=1)
    chat = f"{gw.url}/v1/chat/completions"
    hello = [{"role": "user", "content": "secret plans"}]
    cases = [
        ("sk-gw-not-a-key", "echo", 401),
        (secret, "no-such-agent", 404),
        (poor_secret, "echo", 402),
    ]
    with caplog.at_level(logging.INFO, logger="gateway.requests"):
        async with aiohttp.ClientSession() as http:
            for bearer, model, status in cases:
                body = {"model": model, "messages": hello}
                headers = {"Authorization": f"Bearer {bearer}"}
                async with http.post(chat, json=body, headers=headers) as r:
                    assert r.status == status
    lines = [
        json.loads(JsonFormatter().format(r))
        for r in caplog.records
        if r.name == "gateway.requests"
    ]
    assert [(line["status"], line["outcome"]) for line in lines] == [
        (401, "refused"),
        (404, "refused"),
        (402, "refused"),
    ]
    unknown, missing, broke = lines
    assert unknown["key_id"] is None and unknown["error"] == "invalid_api_key"
    assert missing["key_id"] == key.id and missing["agent"] is None  # never the client's name
    assert (broke["key_id"], broke["agent"], broke["error"]) == (
        poor.id,
        "echo",
        "insufficient_quota",
    )
    for record in caplog.records:
        raw = JsonFormatter().format(record)
        assert secret not in raw and poor_secret not in raw and "plans" not in raw
