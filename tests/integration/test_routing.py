"""Routing across several backends: fallback, weights, time limits and circuit breakers.

Two fake OpenAI upstreams on loopback stand behind one agent; the client is
the official openai SDK.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import openai
import pytest

from tests.conftest import StartGateway
from tests.fakes.openai_upstream import FakeOpenAIUpstream, Script


@pytest.fixture
async def pair() -> AsyncIterator[tuple[FakeOpenAIUpstream, FakeOpenAIUpstream]]:
    first, second = FakeOpenAIUpstream(), FakeOpenAIUpstream()
    await first.start()
    await second.start()
    second.script = Script(content=("from", " second"))
    yield first, second
    await first.close()
    await second.close()


def two_backends(
    a: FakeOpenAIUpstream,
    b: FakeOpenAIUpstream,
    *,
    weights: tuple[int, int] | None = None,
    a_settings: str = "",
) -> str:
    wa, wb = (f", weight: {weights[0]}", f", weight: {weights[1]}") if weights else ("", "")
    return f"""
backends:
  a:
    type: openai_chat
    base_url: {a.base_url}
    timeout: 5
{a_settings}
  b:
    type: openai_chat
    base_url: {b.base_url}
routes:
  agent:
    model: m
    pricing: {{input: 1, output: 1}}
    backends:
      - {{backend: a{wa}}}
      - {{backend: b, model: b-model{wb}}}
"""


async def ask(url: str, key: str, *, stream: bool = False) -> str:
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0) as client:
        messages: list[dict[str, str]] = [{"role": "user", "content": "hi"}]
        if not stream:
            reply = await client.chat.completions.create(model="agent", messages=messages)  # type: ignore[arg-type]
            return reply.choices[0].message.content or ""
        chunks = await client.chat.completions.create(model="agent", messages=messages, stream=True)  # type: ignore[arg-type]
        return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])


@pytest.mark.parametrize(
    "failure",
    [
        Script(status=500),
        Script(status=503),
        Script(status=429),
        Script(first_byte_delay=3.0),
    ],
    ids=["500", "503", "429", "first-byte-timeout"],
)
async def test_falls_back_before_the_first_byte(
    start_gateway: StartGateway,
    pair: tuple[FakeOpenAIUpstream, FakeOpenAIUpstream],
    failure: Script,
) -> None:
    a, b = pair
    a.script = failure
    settings = "    timeouts: {first_byte: 0.3}"
    gw = await start_gateway(two_backends(a, b, a_settings=settings))
    key = await gw.new_key()
    assert await ask(gw.url, key) == "from second"
    assert await ask(gw.url, key, stream=True) == "from second"
    assert b.requests[-1].body["model"] == "b-model"  # the target's own model name


async def test_connection_refused_falls_back(
    start_gateway: StartGateway, pair: tuple[FakeOpenAIUpstream, FakeOpenAIUpstream]
) -> None:
    a, b = pair
    await a.close()  # nothing listens there any more
    gw = await start_gateway(two_backends(a, b))
    assert await ask(gw.url, await gw.new_key()) == "from second"


async def test_a_bad_request_does_not_fall_back(
    start_gateway: StartGateway, pair: tuple[FakeOpenAIUpstream, FakeOpenAIUpstream]
) -> None:
    a, b = pair
    a.script = Script(status=400)
    gw = await start_gateway(two_backends(a, b))
    with pytest.raises(openai.BadRequestError):
        await ask(gw.url, await gw.new_key())
    assert b.requests == []


async def test_no_fallback_after_the_first_byte(
    start_gateway: StartGateway, pair: tuple[FakeOpenAIUpstream, FakeOpenAIUpstream]
) -> None:
    a, b = pair
    a.script = Script(content=("one", " two", " three"), cut_after=1)
    gw = await start_gateway(two_backends(a, b))
    with pytest.raises(openai.APIError):
        await ask(gw.url, await gw.new_key(), stream=True)
    assert b.requests == []


async def test_when_every_backend_fails_the_last_error_is_reported(
    start_gateway: StartGateway, pair: tuple[FakeOpenAIUpstream, FakeOpenAIUpstream]
) -> None:
    a, b = pair
    a.script = Script(status=500)
    b.script = Script(status=429)
    gw = await start_gateway(two_backends(a, b))
    with pytest.raises(openai.RateLimitError):
        await ask(gw.url, await gw.new_key())
    assert len(a.requests) == 1 and len(b.requests) == 1


async def test_weights_spread_the_first_choice(
    start_gateway: StartGateway, pair: tuple[FakeOpenAIUpstream, FakeOpenAIUpstream]
) -> None:
    a, b = pair
    gw = await start_gateway(two_backends(a, b, weights=(1, 3)))
    key = await gw.new_key()
    await asyncio.gather(*(ask(gw.url, key) for _ in range(200)))
    share = len(b.requests) / 200
    assert 0.6 < share < 0.9, share  # 0.75 expected; bounds are > 5 standard deviations wide


async def test_circuit_opens_after_failures_and_a_probe_closes_it(
    start_gateway: StartGateway, pair: tuple[FakeOpenAIUpstream, FakeOpenAIUpstream]
) -> None:
    a, b = pair
    a.script = Script(status=502)
    settings = "    circuit_breaker: {failures: 2, cooldown: 0.5}"
    gw = await start_gateway(two_backends(a, b, a_settings=settings))
    key = await gw.new_key()
    for _ in range(5):
        assert await ask(gw.url, key) == "from second"
    assert len(a.requests) == 2  # open after two failures: a is no longer tried

    a.script = Script(content=("a", " is", " back"))
    await asyncio.sleep(0.6)
    assert await ask(gw.url, key) == "a is back"  # the probe
    assert await ask(gw.url, key) == "a is back"  # closed again


async def test_open_circuit_with_no_other_backend_is_503(
    start_gateway: StartGateway, pair: tuple[FakeOpenAIUpstream, FakeOpenAIUpstream]
) -> None:
    a, _ = pair
    a.script = Script(status=500)
    gw = await start_gateway(
        f"""
backends:
  a:
    type: openai_chat
    base_url: {a.base_url}
    circuit_breaker: {{failures: 1, cooldown: 60}}
routes:
  agent: {{backend: a}}
"""
    )
    key = await gw.new_key()
    with pytest.raises(openai.InternalServerError) as first:
        await ask(gw.url, key)
    assert first.value.status_code == 502
    with pytest.raises(openai.InternalServerError) as second:
        await ask(gw.url, key)
    assert second.value.status_code == 503
    assert len(a.requests) == 1


async def say(url: str, key: str, text: str) -> tuple[int, str]:
    """POST one chat completion saying ``text``: its status and error code (if any)."""
    body = {"model": "agent", "messages": [{"role": "user", "content": text}]}
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
        ) as r,
    ):
        answer = await r.json()
        return r.status, (answer.get("error") or {}).get("code") or ""


def one_backend(a: FakeOpenAIUpstream) -> str:
    return f"""
backends:
  a:
    type: openai_chat
    base_url: {a.base_url}
    circuit_breaker: {{failures: 3, cooldown: 60}}
routes:
  agent: {{backend: a}}
"""


async def test_one_key_making_the_upstream_fail_does_not_open_the_circuit_for_others(
    start_gateway: StartGateway, pair: tuple[FakeOpenAIUpstream, FakeOpenAIUpstream]
) -> None:
    """A key whose requests make the upstream answer 500 pauses itself, not its neighbours."""
    a, _ = pair
    a.choose = lambda body: Script(status=500) if "poison" in str(body) else None
    gw = await start_gateway(one_backend(a))
    noisy, quiet = await gw.new_key(), await gw.new_key()
    for _ in range(4):
        noisy_answers = await asyncio.gather(*(say(gw.url, noisy, "poison") for _ in range(10)))
        quiet_answers = await asyncio.gather(*(say(gw.url, quiet, "hello") for _ in range(5)))
        assert all(status in (502, 503) for status, _ in noisy_answers)
        assert quiet_answers == [(200, "")] * 5
    assert await say(gw.url, noisy, "poison") == (503, "key_circuit_open")
    assert await say(gw.url, noisy, "hello") == (503, "key_circuit_open")  # paused a while
    poisoned = [r for r in a.requests if "poison" in str(r.body)]
    assert len(poisoned) < 15  # paused after its failures: the upstream was spared the rest


async def test_failures_from_several_keys_still_open_the_circuit(
    start_gateway: StartGateway, pair: tuple[FakeOpenAIUpstream, FakeOpenAIUpstream]
) -> None:
    a, _ = pair
    a.script = Script(status=500)
    gw = await start_gateway(one_backend(a))
    keys = [await gw.new_key() for _ in range(3)]
    assert [await say(gw.url, key, "hi") for key in keys] == [(502, "upstream_error")] * 3
    fresh = await gw.new_key()
    a.script = Script()
    assert await say(gw.url, fresh, "hi") == (503, "service_unavailable")
    assert len(a.requests) == 3


async def test_idle_timeout_between_chunks(
    start_gateway: StartGateway, pair: tuple[FakeOpenAIUpstream, FakeOpenAIUpstream]
) -> None:
    a, b = pair
    a.script = Script(content=("one", " two"), stall_after=1)
    gw = await start_gateway(
        two_backends(a, b, a_settings="    timeouts: {first_byte: 5, idle: 0.3}")
    )
    started = time.monotonic()
    with pytest.raises(openai.APIError) as caught:
        await ask(gw.url, await gw.new_key(), stream=True)
    assert time.monotonic() - started < 3
    assert "timed out" in str(caught.value)
    assert b.requests == []  # the first byte had been sent: no fallback


async def test_total_timeout(
    start_gateway: StartGateway, pair: tuple[FakeOpenAIUpstream, FakeOpenAIUpstream]
) -> None:
    a, b = pair
    a.script = Script(content=tuple(f" w{i}" for i in range(100)), chunk_delay=0.05)
    gw = await start_gateway(
        two_backends(a, b, a_settings="    timeouts: {first_byte: 5, idle: 5, total: 0.5}")
    )
    started = time.monotonic()
    with pytest.raises(openai.APIError):
        await ask(gw.url, await gw.new_key(), stream=True)
    assert time.monotonic() - started < 3


async def test_client_going_away_cancels_the_upstream_within_100_ms(
    start_gateway: StartGateway, pair: tuple[FakeOpenAIUpstream, FakeOpenAIUpstream]
) -> None:
    a, b = pair
    a.script = Script(content=tuple(f" w{i}" for i in range(200)), chunk_delay=0.05)
    gw = await start_gateway(two_backends(a, b))
    key = await gw.new_key()
    body = {"model": "agent", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    async with aiohttp.ClientSession() as http:
        response = await http.post(
            f"{gw.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
        )
        await response.content.readline()
        response.close()  # the client vanishes mid-stream
        gone = time.monotonic()
    disconnect = await a.wait_disconnect(timeout=2)
    assert disconnect.at - gone < 0.1


async def test_the_request_id_goes_upstream_and_back(
    start_gateway: StartGateway, pair: tuple[FakeOpenAIUpstream, FakeOpenAIUpstream]
) -> None:
    a, b = pair
    gw = await start_gateway(two_backends(a, b))
    key = await gw.new_key()
    async with aiohttp.ClientSession() as http:
        body = {"model": "agent", "messages": [{"role": "user", "content": "hi"}]}
        headers = {
            "Authorization": f"Bearer {key}",
            "X-Request-Id": "trace-123",
            "Connection": "keep-alive",
            "Proxy-Authorization": "Basic secret",
        }
        async with http.post(f"{gw.url}/v1/chat/completions", json=body, headers=headers) as r:
            assert r.status == 200
            assert r.headers["X-Request-Id"] == "trace-123"
    received = a.requests[-1].headers
    assert received["X-Request-Id"] == "trace-123"
    assert key not in str(dict(received))
    assert "Proxy-Authorization" not in received
