"""Metering and key lifecycle on a running gateway: the ledger, disconnects, revocation."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from tests.conftest import RunningGateway, StartGateway
from tests.fakes.openai_upstream import FakeOpenAIUpstream, Script
from tests.integration.conftest import MakeClient
from tests.integration.support import eventually, upstream_config, usage_entries

TOOL: Any = {
    "type": "function",
    "function": {
        "name": "lookup",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
    },
}


def priced(usage: openai.types.CompletionUsage) -> int:
    """What ECHO_CONFIG's ``echo`` and ``slow`` routes charge: 1 per input, 2 per output token."""
    return usage.prompt_tokens + 2 * usage.completion_tokens


async def test_ledger_sum_equals_balance_change(
    start_gateway: StartGateway, sdk: MakeClient
) -> None:
    gw = await start_gateway()
    key, secret = await gw.new_key_record(balance=100_000)
    client = sdk(gw, secret)

    async def plain(i: int) -> tuple[str, int]:
        rid = f"plain-{i}"
        words = " ".join(["word"] * (i + 1))
        reply = await client.chat.completions.create(
            model="echo",
            messages=[{"role": "user", "content": words}],
            extra_headers={"X-Request-Id": rid},
        )
        assert reply.usage is not None
        return rid, priced(reply.usage)

    async def streamed(i: int) -> tuple[str, int]:
        rid = f"stream-{i}"
        stream = await client.chat.completions.create(
            model="echo",
            messages=[{"role": "user", "content": "stream " * (i + 2)}],
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"X-Request-Id": rid},
        )
        usage = [c async for c in stream][-1].usage
        assert usage is not None
        return rid, priced(usage)

    async def tool(i: int) -> tuple[str, int]:
        rid = f"tool-{i}"
        reply = await client.chat.completions.create(
            model="echo",
            messages=[{"role": "user", "content": "look it up"}],
            tools=[TOOL],
            extra_headers={"X-Request-Id": rid},
        )
        assert reply.usage is not None
        return rid, priced(reply.usage)

    jobs = (
        [plain(i) for i in range(8)] + [streamed(i) for i in range(8)] + [tool(i) for i in range(4)]
    )
    expected = dict(await asyncio.gather(*jobs))  # concurrently: settlements race in Redis

    entries = await usage_entries(gw, key.id, count=len(expected))
    assert len(entries) == len(expected)
    by_request = {e.request_id: e for e in entries}
    assert set(by_request) == set(expected)
    for rid, credits in expected.items():
        assert by_request[rid].amount == -credits, rid
        assert by_request[rid].agent == "echo"

    ledger = await gw.store.ledger(key.id)
    balance = await gw.store.balance(key.id)
    assert sum(e.amount for e in ledger) == balance
    assert balance == 100_000 - sum(expected.values())
    assert sum(e.amount for e in ledger if e.kind == "usage") == balance - 100_000
    # Each entry records the balance right after it: the ledger is a consistent history.
    running = 0
    for entry in ledger:
        running += entry.amount
        assert entry.balance == running


async def test_a_reused_request_id_is_billed_every_time(
    start_gateway: StartGateway, sdk: MakeClient
) -> None:
    gw = await start_gateway()
    key, secret = await gw.new_key_record(balance=100_000)
    client = sdk(gw, secret)
    for _ in range(3):
        await client.chat.completions.create(
            model="echo",
            messages=[{"role": "user", "content": "again"}],
            extra_headers={"X-Request-Id": "same-id"},
        )
    entries = await usage_entries(gw, key.id, count=3)
    assert len(entries) == 3
    assert all(e.request_id == "same-id" for e in entries)


async def test_free_route_costs_nothing(start_gateway: StartGateway, sdk: MakeClient) -> None:
    gw = await start_gateway()
    key, secret = await gw.new_key_record(balance=0)
    await sdk(gw, secret).chat.completions.create(
        model="free", messages=[{"role": "user", "content": "free lunch"}]
    )
    await asyncio.sleep(0.1)
    assert await gw.store.balance(key.id) == 0
    assert all(e.amount == 0 for e in await gw.store.ledger(key.id))


async def test_a_balance_below_the_maximum_cost_is_refused_and_never_overdrawn(
    start_gateway: StartGateway, sdk: MakeClient
) -> None:
    gw = await start_gateway()
    key, secret = await gw.new_key_record(balance=100)
    client = sdk(gw, secret)
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "this may cost up to 400"}]
        )
    assert caught.value.status_code == 402
    message = str(caught.value)
    assert "100 credits" in message and "may cost up to" in message
    await gw.store.credit(key.id, 1_000, note="top-up")
    reply = await client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "again"}]
    )
    assert reply.choices[0].message.content == "again"
    (entry,) = await usage_entries(gw, key.id)
    assert await gw.store.balance(key.id) == 1_100 + entry.amount > 0
    assert await gw.store.held(key.id) == 0


async def read_then_disconnect(
    gw: RunningGateway, secret: str, agent: str, text: str, k: int
) -> tuple[list[str], float]:
    """Stream a request with raw HTTP, read ``k`` content chunks, then drop the connection.

    Returns the content read and the ``time.monotonic()`` of the disconnect.
    """
    received: list[str] = []
    body = {"model": agent, "messages": [{"role": "user", "content": text}], "stream": True}
    headers = {"Authorization": f"Bearer {secret}"}
    async with aiohttp.ClientSession() as session:
        resp = await session.post(f"{gw.url}/v1/chat/completions", json=body, headers=headers)
        assert resp.status == 200
        while len(received) < k:
            line = await asyncio.wait_for(resp.content.readline(), 5)
            assert line, "the stream ended early"
            if not line.startswith(b"data: {"):
                continue
            chunk = orjson.loads(line[len(b"data: ") :])
            content = chunk["choices"][0]["delta"].get("content")
            if content:
                received.append(content)
        resp.close()  # closes the connection, not just the response
        closed_at = time.monotonic()
    return received, closed_at


async def test_client_disconnect_mid_stream_is_billed(start_gateway: StartGateway) -> None:
    gw = await start_gateway()  # the ``slow`` route: echo with 50 ms between deltas
    key, secret = await gw.new_key_record(balance=100_000)
    words = 60  # three seconds of stream if nobody stopped it
    k = 5
    received, _ = await read_then_disconnect(gw, secret, "slow", "w " * words, k)
    assert len(received) == k

    (entry,) = await usage_entries(gw, key.id, within=3.0)
    assert entry.usage is not None
    assert entry.usage.output_tokens >= k
    assert entry.usage.output_tokens < words  # the stream stopped when the client left
    assert entry.usage.input_tokens > 0
    assert entry.usage.estimated  # the backend never reported usage: the gateway counted
    assert entry.amount < 0
    assert entry.amount == -(entry.usage.input_tokens + 2 * entry.usage.output_tokens)
    assert await gw.store.balance(key.id) == 100_000 + entry.amount
    await asyncio.sleep(0.3)
    assert len(await usage_entries(gw, key.id)) == 1  # billed once


async def test_client_disconnect_reaches_the_upstream(
    start_gateway: StartGateway, fake_upstream: FakeOpenAIUpstream, upstream_env: str
) -> None:
    content = tuple(f"t{i} " for i in range(100))
    fake_upstream.script = Script(content=content, chunk_delay=0.05)
    gw = await start_gateway(upstream_config(fake_upstream.base_url))
    key, secret = await gw.new_key_record(balance=100_000)
    k = 4
    received, closed_at = await read_then_disconnect(gw, secret, "up", "hi", k)
    assert received == list(content[:k])

    disconnect = await fake_upstream.wait_disconnect(timeout=2.0)
    assert disconnect.at - closed_at < 1.0
    assert disconnect.chunks_sent < len(content)
    assert fake_upstream.completed == 0

    (entry,) = await usage_entries(gw, key.id)
    assert entry.usage is not None and entry.usage.estimated
    assert entry.usage.output_tokens >= k
    assert entry.amount < 0


async def _status(http: aiohttp.ClientSession, gw: RunningGateway, secret: str) -> int:
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {secret}"}
    async with http.post(f"{gw.url}/v1/chat/completions", json=body, headers=headers) as resp:
        await resp.read()
        return resp.status


async def test_revoked_key_is_refused_within_a_second_everywhere(
    start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    first = await start_gateway()
    second = await start_gateway()  # another process sharing the Redis
    key, secret = await first.new_key_record()
    for gw in (first, second):  # both caches now hold the key
        assert await _status(http, gw, secret) == 200

    await first.store.revoke_key(key.id)
    revoked_at = time.monotonic()
    for gw in (first, second):

        async def refused(gw: RunningGateway = gw) -> bool:
            return await _status(http, gw, secret) == 401

        await eventually(refused, within=1.5, interval=0.05)
        assert time.monotonic() - revoked_at <= 1.1
    for gw in (first, second):
        assert await _status(http, gw, secret) == 401


async def test_expired_key_is_refused(
    start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway()
    _, expired = await gw.new_key_record(expires_at=time.time() - 1)
    assert await _status(http, gw, expired) == 401

    _, expiring = await gw.new_key_record(expires_at=time.time() + 0.5)
    assert await _status(http, gw, expiring) == 200  # now cached
    await asyncio.sleep(0.6)
    assert await _status(http, gw, expiring) == 401


async def test_disconnect_before_the_first_byte_cancels_the_upstream(
    start_gateway: StartGateway, fake_upstream: FakeOpenAIUpstream, upstream_env: str
) -> None:
    fake_upstream.script = Script(first_byte_delay=30)
    gw = await start_gateway(upstream_config(fake_upstream.base_url, timeout=60))
    key, secret = await gw.new_key_record(balance=100_000)
    body = {"model": "up", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    headers = {"Authorization": f"Bearer {secret}"}
    async with aiohttp.ClientSession() as session:
        request = asyncio.ensure_future(
            session.post(f"{gw.url}/v1/chat/completions", json=body, headers=headers)
        )
        await eventually(lambda: _received(fake_upstream))
        request.cancel()  # the client gives up while the gateway waits for the upstream
        with pytest.raises(asyncio.CancelledError):
            await request
        closed_at = time.monotonic()
    disconnect = await fake_upstream.wait_disconnect(timeout=2.0)
    assert disconnect.at - closed_at < 1.0
    await asyncio.sleep(0.1)
    assert [e.kind for e in await gw.store.ledger(key.id)] == ["credit"]  # nothing to bill
    assert await gw.store.held(key.id) == 0


async def _received(upstream: FakeOpenAIUpstream) -> bool:
    return bool(upstream.requests)


async def test_metering_survives_redis_forgetting_its_scripts(
    start_gateway: StartGateway, sdk: MakeClient, redis_client: Any
) -> None:
    gw = await start_gateway()
    key, secret = await gw.new_key_record(balance=100_000)
    client = sdk(gw, secret)
    await client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "a"}])
    await redis_client.script_flush()  # as after a restart or a failover
    await client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "b"}])
    assert len(await usage_entries(gw, key.id, count=2)) == 2
    assert await gw.store.held(key.id) == 0
