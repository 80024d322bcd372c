"""Conversation content never reaches a log record, a metric, the ledger, the audit log or
any Redis key but the stored responses and A2A tasks and contexts: for every dialect
(Chat Completions, Open Responses, Anthropic Messages, A2A), streamed and not, through
the official SDKs.

Each request carries a marker in its prompt; the echo backend says it back, so the
answer carries it too. Everything the gateway recorded is then searched for it.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import anthropic
import httpx
import openai
import pytest
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.types import a2a_pb2 as a2a
from redis import asyncio as aioredis

from tests.conftest import RunningGateway, StartGateway
from tests.integration.a2a_support import collect, message, streamed_text, text_of

MARK = "zqxj-private-8d1f"
CLIENT_LOGGERS = ("openai", "anthropic", "httpx", "httpcore", "a2a")
PROMPT = f"my diagnosis is {MARK} please keep it"


async def _chat(gw: RunningGateway, key: str) -> None:
    client = openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0)
    try:
        messages: Any = [{"role": "user", "content": PROMPT}]
        done = await client.chat.completions.create(model="echo", messages=messages)
        assert MARK in (done.choices[0].message.content or "")
        stream = await client.chat.completions.create(model="echo", messages=messages, stream=True)
        assert MARK in "".join(
            [c.choices[0].delta.content or "" async for c in stream if c.choices]
        )
    finally:
        await client.close()


async def _responses(gw: RunningGateway, key: str) -> None:
    client = openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0)
    try:
        done = await client.responses.create(model="echo", input=PROMPT)
        assert MARK in done.output_text
        follow = await client.responses.create(
            model="echo", input=PROMPT, previous_response_id=done.id, stream=True
        )
        assert [e async for e in follow]
    finally:
        await client.close()


async def _messages(gw: RunningGateway, key: str) -> None:
    client = anthropic.AsyncAnthropic(base_url=gw.url, api_key=key, max_retries=0)
    try:
        messages: Any = [{"role": "user", "content": PROMPT}]
        done = await client.messages.create(model="echo", max_tokens=100, messages=messages)
        assert MARK in done.content[0].text  # type: ignore[union-attr]
        async with client.messages.stream(
            model="echo", max_tokens=100, messages=messages
        ) as stream:
            assert MARK in await stream.get_final_text()
    finally:
        await client.close()


async def _a2a(gw: RunningGateway, key: str) -> None:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=10) as http:
        card = await A2ACardResolver(http, f"{gw.url}/a2a/echo").get_agent_card()
        streaming = ClientFactory(ClientConfig(httpx_client=http)).create(card)
        events = await collect(streaming.send_message(message(PROMPT)))
        assert MARK in streamed_text(events)
        blocking = ClientFactory(ClientConfig(httpx_client=http, streaming=False)).create(card)
        context_id = events[0].task.context_id
        [done] = await collect(blocking.send_message(message(PROMPT, context_id)))
        assert MARK in text_of(done.task)
        listed = await blocking.list_tasks(a2a.ListTasksRequest(include_artifacts=True))
        assert len(listed.tasks) == 2


# The stored content itself (see test_responses_storage, test_a2a_storage): responses
# and their streams, A2A tasks and their streams, A2A contexts.
STORED_CONTENT = (":response:", ":a2a:task:", ":a2a:context:")


async def _redis_outside_stored_responses(redis: aioredis.Redis) -> str:
    """Every value Redis holds but the stored content (responses, A2A tasks, contexts)."""
    seen = []
    for name in await redis.keys("*"):
        if any(part in name for part in STORED_CONTENT):
            continue
        kind = await redis.type(name)
        if kind == "string":
            seen.append(await redis.get(name))
        elif kind == "hash":
            seen.append(repr(await redis.hgetall(name)))
        elif kind == "stream":
            seen.append(repr(await redis.xrange(name)))
        elif kind == "zset":
            seen.append(repr(await redis.zrange(name, 0, -1, withscores=True)))
        elif kind in ("set", "list"):
            members = await (redis.smembers(name) if kind == "set" else redis.lrange(name, 0, -1))
            seen.append(repr(members))
        seen.append(name)
    return "\n".join(str(s) for s in seen)


@pytest.mark.parametrize(
    "dialect", [_chat, _responses, _messages, _a2a], ids=lambda f: f.__name__[1:]
)
async def test_no_content_outside_the_stored_responses(
    dialect: Any,
    start_gateway: StartGateway,
    redis_client: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gw = await start_gateway()
    key = await gw.new_key()
    caplog.set_level(logging.DEBUG)
    await dialect(gw, key)
    # A refused request that quotes content back to its client logs none of it either.
    async with aiohttp.ClientSession() as http:
        body = {"model": "nope", "messages": [{"role": "user", "content": PROMPT}]}
        headers = {"Authorization": f"Bearer {key}"}
        async with http.post(f"{gw.url}/v1/chat/completions", json=body, headers=headers) as r:
            assert r.status == 404
        async with http.get(f"{gw.url}/metrics") as r:
            metrics = await r.text()
    await gw.gateway.tasks.drain()

    assert any(r.name == "gateway.requests" for r in caplog.records), "the access log ran"
    # The SDKs' own debug records (the client's side, in this process) say what they sent.
    server = [r for r in caplog.records if not r.name.startswith(CLIENT_LOGGERS)]
    assert server
    for record in server:
        assert MARK not in record.getMessage(), record.name
        assert MARK not in repr(vars(record)), record.name
    assert "gateway_requests_total" in metrics and MARK not in metrics
    key_id = (await gw.key_of(key)).id
    ledger = await gw.store.ledger(key_id)
    assert len(ledger) > 1 and MARK not in repr([e.to_json() for e in ledger])
    assert MARK not in repr([e.to_json() for e in await gw.store.audit_log()])
    assert MARK not in await _redis_outside_stored_responses(redis_client)
