"""A field that changes the upstream's price (``service_tier``, ``speed``) is refused
with a 400 in the client's own dialect, unless the route allows it; then it reaches
the upstream. Each dialect, through a real gateway on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.conftest import RunningGateway, StartGateway
from tests.fakes.openai_upstream import FakeOpenAIUpstream
from tests.integration.support import upstream_config

HELLO = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAIUpstream]:
    upstream = FakeOpenAIUpstream()
    await upstream.start()
    yield upstream
    await upstream.close()


@pytest.fixture
async def gw(
    start_gateway: StartGateway, fake: FakeOpenAIUpstream, upstream_env: str
) -> RunningGateway:
    config = upstream_config(fake.base_url)
    config += "  tiered:\n    backend: upstream\n    pricing: {input: 5, output: 20}\n"
    config += "    allow_price_fields: [service_tier, speed]\n"
    return await start_gateway(config)


async def post(gw: RunningGateway, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    key = await gw.new_key()
    headers = {"Authorization": f"Bearer {key}", "x-api-key": key}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{gw.url}{path}", json=body, headers=headers) as r,
    ):
        return r.status, await r.json()


def chat(agent: str, **extra: object) -> dict[str, Any]:
    return {"model": agent, "messages": HELLO, **extra}


def responses(agent: str, **extra: object) -> dict[str, Any]:
    return {"model": agent, "input": "hi", **extra}


def messages(agent: str, **extra: object) -> dict[str, Any]:
    return {"model": agent, "max_tokens": 64, "messages": HELLO, **extra}


async def test_chat_refuses_a_service_tier_the_route_does_not_allow(
    gw: RunningGateway, fake: FakeOpenAIUpstream
) -> None:
    status, body = await post(gw, "/v1/chat/completions", chat("up", service_tier="priority"))
    assert status == 400
    error = body["error"]
    assert error["param"] == "service_tier" and error["code"] == "field_not_allowed"
    assert error["type"] == "invalid_request_error" and "not allowed" in error["message"]
    assert fake.requests == []
    status, _ = await post(gw, "/v1/chat/completions", chat("up", service_tier="default"))
    assert status == 200 and fake.last.body["service_tier"] == "default"
    status, _ = await post(gw, "/v1/chat/completions", chat("tiered", service_tier="priority"))
    assert status == 200 and fake.last.body["service_tier"] == "priority"


async def test_responses_refuses_a_service_tier_the_route_does_not_allow(
    gw: RunningGateway, fake: FakeOpenAIUpstream
) -> None:
    status, body = await post(gw, "/v1/responses", responses("up", service_tier="flex"))
    assert status == 400
    error = body["error"]
    assert error["param"] == "service_tier" and error["code"] == "field_not_allowed"
    assert fake.requests == []
    status, _ = await post(gw, "/v1/responses", responses("tiered", service_tier="flex"))
    assert status == 200 and fake.last.body["service_tier"] == "flex"


@pytest.mark.parametrize(("field", "value"), [("service_tier", "auto"), ("speed", "fast")])
async def test_messages_refuses_a_price_field_the_route_does_not_allow(
    gw: RunningGateway, fake: FakeOpenAIUpstream, field: str, value: str
) -> None:
    status, body = await post(gw, "/v1/messages", messages("up", **{field: value}))
    assert status == 400
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert f"'{field}'" in body["error"]["message"] and "not allowed" in body["error"]["message"]
    assert fake.requests == []
    status, _ = await post(gw, "/v1/messages", messages("tiered", **{field: value}))
    assert status == 200
