"""The ``openai_chat`` backend end to end: SDK -> gateway -> fake OpenAI-compatible upstream."""

from __future__ import annotations

import asyncio
import json
import math
import time
from decimal import Decimal
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from tests.conftest import StartGateway
from tests.fakes.openai_upstream import FakeOpenAIUpstream, Script, ToolCallScript
from tests.integration.conftest import MakeClient
from tests.integration.support import upstream_config, usage_entries

HELLO: Any = [{"role": "user", "content": "hello upstream"}]


async def test_a_request_goes_upstream_streamed_or_not_as_the_client_asked(
    start_gateway: StartGateway,
    sdk: MakeClient,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
) -> None:
    gw = await start_gateway(upstream_config(fake_upstream.base_url))
    key = await gw.new_key()
    client = sdk(gw, key)
    reply = await client.chat.completions.create(model="up", messages=HELLO)
    assert reply.choices[0].message.content == "Hello from upstream"
    assert reply.model == "up"  # the client sees the agent id, not the upstream model
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (11, 3)
    received = fake_upstream.last
    assert received.path == "/v1/chat/completions"
    assert "stream" not in received.body and "stream_options" not in received.body
    assert received.body["model"] == "upstream-model-x"
    assert received.body["messages"] == [{"role": "user", "content": "hello upstream"}]

    stream = await client.chat.completions.create(model="up", messages=HELLO, stream=True)
    assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == (
        "Hello from upstream"
    )
    # Streamed upstream with usage, whether or not the client asked for it.
    assert fake_upstream.last.body["stream"] is True
    assert fake_upstream.last.body["stream_options"] == {"include_usage": True}


async def test_an_upstream_cookie_never_reaches_another_request(
    start_gateway: StartGateway,
    sdk: MakeClient,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
) -> None:
    # By name: aiohttp's cookie jar would ignore a cookie from an IP address anyway.
    by_name = fake_upstream.base_url.replace("127.0.0.1", "localhost")
    gw = await start_gateway(upstream_config(by_name))
    fake_upstream.script = Script(set_cookie="session=for-client-a; Path=/")
    client = sdk(gw, await gw.new_key())
    await client.chat.completions.create(model="up", messages=HELLO)
    await client.chat.completions.create(model="up", messages=HELLO, stream=True)
    assert len(fake_upstream.requests) == 2
    assert all("Cookie" not in r.headers for r in fake_upstream.requests)


async def test_always_stream_streams_every_request_upstream(
    start_gateway: StartGateway,
    sdk: MakeClient,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
) -> None:
    gw = await start_gateway(upstream_config(fake_upstream.base_url, always_stream="true"))
    key = await gw.new_key()
    reply = await sdk(gw, key).chat.completions.create(model="up", messages=HELLO)
    assert reply.choices[0].message.content == "Hello from upstream"
    assert fake_upstream.last.body["stream"] is True
    assert fake_upstream.last.body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(
    "script",
    [
        Script(),
        Script(content=("Hi", " there"), finish_reason="length"),
        Script(
            content=("Let me check.",),
            tool_calls=(
                ToolCallScript("get_weather", ('{"city":', ' "Oslo"}'), call_id="call_a"),
                ToolCallScript("get_time", ("{}",), call_id="call_b"),
            ),
        ),
        Script(content=("no usage",), usage=None),
    ],
    ids=["text", "length", "tool-calls", "no-usage"],
)
async def test_the_non_streamed_path_answers_and_bills_as_the_streamed_path(
    start_gateway: StartGateway,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
    http: aiohttp.ClientSession,
    script: Script,
) -> None:
    """A non-streaming request sent upstream as it came (the fast path) and streamed
    upstream (``always_stream``): the same answer, byte for byte but for the ids and
    the time, and the same ledger entry."""
    fake_upstream.script = script
    answers, entries = [], []
    for always in ("false", "true"):
        gw = await start_gateway(upstream_config(fake_upstream.base_url, always_stream=always))
        key, secret = await gw.new_key_record()
        async with http.post(
            f"{gw.url}/v1/chat/completions",
            json={"model": "up", "messages": HELLO},
            headers={"Authorization": f"Bearer {secret}"},
        ) as resp:
            assert resp.status == 200, await resp.text()
            raw = await resp.read()
            billing = (resp.headers["x-gateway-cost"], resp.headers["x-gateway-balance"])
        (entry,) = await usage_entries(gw, key.id)
        answers.append((_without_ids(raw), billing))
        entries.append((entry.amount, entry.balance, entry.usage, entry.held, entry.agent))
        assert fake_upstream.last.body.get("stream", False) is (always == "true")
    assert answers[0] == answers[1]
    assert entries[0] == entries[1]


def _without_ids(raw: bytes) -> bytes:
    """``raw`` with the parts that differ between any two answers (id, created) blanked."""
    body = json.loads(raw)
    body["id"], body["created"] = "", 0
    return json.dumps(body).encode()


async def test_upstream_gets_the_env_secret_never_the_client_key(
    start_gateway: StartGateway,
    sdk: MakeClient,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
) -> None:
    gw = await start_gateway(upstream_config(fake_upstream.base_url))
    key = await gw.new_key()
    client = sdk(gw, key)
    await client.chat.completions.create(model="up", messages=HELLO)
    stream = await client.chat.completions.create(model="up", messages=HELLO, stream=True)
    _ = [c async for c in stream]
    assert len(fake_upstream.requests) == 2
    for received in fake_upstream.requests:
        assert received.headers.getall("Authorization") == [f"Bearer {upstream_env}"]
        assert all(key not in value for value in received.headers.values())
        assert key not in json.dumps(received.body)


async def test_request_id_passes_through(
    start_gateway: StartGateway,
    sdk: MakeClient,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
) -> None:
    gw = await start_gateway(upstream_config(fake_upstream.base_url))
    client = sdk(gw, await gw.new_key())

    raw = await client.chat.completions.with_raw_response.create(
        model="up", messages=HELLO, extra_headers={"X-Request-Id": "client-req-42"}
    )
    assert raw.headers["x-request-id"] == "client-req-42"
    assert fake_upstream.last.headers["X-Request-Id"] == "client-req-42"

    raw = await client.chat.completions.with_raw_response.create(
        model="up", messages=HELLO, stream=True, extra_headers={"X-Request-Id": "client-req-43"}
    )
    assert raw.headers["x-request-id"] == "client-req-43"
    _ = [c async for c in raw.parse()]
    assert fake_upstream.last.headers["X-Request-Id"] == "client-req-43"

    raw = await client.chat.completions.with_raw_response.create(model="up", messages=HELLO)
    generated = raw.headers["x-request-id"]
    assert generated and generated not in ("client-req-42", "client-req-43")
    assert fake_upstream.last.headers["X-Request-Id"] == generated

    # An id that could smuggle headers or garbage is replaced, not forwarded.
    raw = await client.chat.completions.with_raw_response.create(
        model="up", messages=HELLO, extra_headers={"X-Request-Id": "bad id with spaces"}
    )
    assert raw.headers["x-request-id"] != "bad id with spaces"
    assert fake_upstream.last.headers["X-Request-Id"] == raw.headers["x-request-id"]


async def test_parameters_reach_the_upstream(
    start_gateway: StartGateway,
    sdk: MakeClient,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
) -> None:
    gw = await start_gateway(upstream_config(fake_upstream.base_url))
    client = sdk(gw, await gw.new_key())
    tool: Any = {
        "type": "function",
        "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
    }
    await client.chat.completions.create(
        model="up",
        messages=[
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": "hi"},
        ],
        max_tokens=77,
        temperature=0.3,
        top_p=0.5,
        stop=["END"],
        response_format={"type": "json_object"},
        tools=[tool],
        tool_choice="required",
    )
    body = fake_upstream.last.body
    assert body["messages"] == [
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]
    # What OpenAI documents, and its reasoning models require (they refuse max_tokens).
    assert body["max_completion_tokens"] == 77 and "max_tokens" not in body
    assert body["temperature"] == 0.3
    assert body["top_p"] == 0.5
    assert body["stop"] == ["END"]
    assert body["response_format"] == {"type": "json_object"}
    assert body["tool_choice"] == "required"
    assert body["tools"][0]["function"]["name"] == "lookup"


async def test_max_tokens_field_for_servers_that_only_take_max_tokens(
    start_gateway: StartGateway,
    sdk: MakeClient,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
) -> None:
    config = upstream_config(fake_upstream.base_url, max_tokens_field="max_tokens")
    gw = await start_gateway(config)
    client = sdk(gw, await gw.new_key())
    await client.chat.completions.create(model="up", messages=HELLO, max_completion_tokens=55)
    body = fake_upstream.last.body
    assert body["max_tokens"] == 55 and "max_completion_tokens" not in body


@pytest.mark.parametrize("stream", [False, True])
async def test_logprobs_come_back_from_the_upstream(
    start_gateway: StartGateway,
    sdk: MakeClient,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
    stream: bool,
) -> None:
    fake_upstream.script = Script(content=("Hi", " there"))
    gw = await start_gateway(upstream_config(fake_upstream.base_url))
    client = sdk(gw, await gw.new_key())
    if stream:
        async with client.chat.completions.stream(
            model="up", messages=HELLO, logprobs=True, top_logprobs=2
        ) as events:
            final = await events.get_final_completion()
    else:
        final = await client.chat.completions.create(
            model="up", messages=HELLO, logprobs=True, top_logprobs=2
        )
    body = fake_upstream.last.body
    assert body["logprobs"] is True and body["top_logprobs"] == 2
    [choice] = final.choices
    assert choice.message.content == "Hi there"
    assert choice.logprobs is not None and choice.logprobs.content is not None
    tokens = choice.logprobs.content
    assert [(t.token, t.logprob, t.bytes) for t in tokens] == [
        ("Hi", 0.0, list(b"Hi")),
        (" there", -0.25, list(b" there")),
    ]
    assert [[(a.token, a.logprob) for a in t.top_logprobs] for t in tokens] == [
        [("alt0", -1.0), ("alt1", -2.0)]
    ] * 2


async def test_no_logprobs_unless_asked(
    start_gateway: StartGateway,
    sdk: MakeClient,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
) -> None:
    gw = await start_gateway(upstream_config(fake_upstream.base_url))
    client = sdk(gw, await gw.new_key())
    reply = await client.chat.completions.create(model="up", messages=HELLO)
    assert reply.choices[0].logprobs is None
    assert "logprobs" not in fake_upstream.last.body
    assert "top_logprobs" not in fake_upstream.last.body


async def test_a_backend_without_logprobs_refuses_them(
    start_gateway: StartGateway, sdk: MakeClient
) -> None:
    gw = await start_gateway()  # the echo backend
    client = sdk(gw, await gw.new_key())
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="echo", messages=HELLO, logprobs=True)
    assert caught.value.status_code == 400
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["param"] == "logprobs" and "logprobs" in error["message"]
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="echo", messages=HELLO, top_logprobs=2)
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "top_logprobs"


@pytest.mark.parametrize("always_stream", [False, True])
async def test_a_json_answer_to_a_streaming_request_is_read_whole(
    start_gateway: StartGateway,
    sdk: MakeClient,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
    always_stream: bool,
) -> None:
    fake_upstream.script = Script(
        content=("a", "b"),
        tool_calls=(ToolCallScript("f", ('{"x":', "1}")),),
        json_answer=True,
    )
    config = upstream_config(fake_upstream.base_url, always_stream=str(always_stream).lower())
    gw = await start_gateway(config)
    client = sdk(gw, await gw.new_key())
    async with client.chat.completions.stream(
        model="up", messages=HELLO, stream_options={"include_usage": True}
    ) as events:
        final = await events.get_final_completion()
    assert fake_upstream.last.body["stream"] is True
    [choice] = final.choices
    assert choice.message.content == "ab" and choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls or []
    assert (call.function.name, call.function.arguments) == ("f", '{"x":1}')
    assert final.usage is not None and final.usage.prompt_tokens == 11
    if always_stream:  # a non-streaming client request, streamed upstream: the same answer
        reply = await client.chat.completions.create(model="up", messages=HELLO)
        assert reply.choices[0].message.content == "ab"


async def test_streamed_upstream_answer(
    start_gateway: StartGateway,
    sdk: MakeClient,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
) -> None:
    fake_upstream.script = Script(content=("a", "b", "c", "d"), chunk_delay=0.01)
    gw = await start_gateway(upstream_config(fake_upstream.base_url))
    client = sdk(gw, await gw.new_key())
    stream = await client.chat.completions.create(
        model="up", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "abcd"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 11


async def test_upstream_tool_calls_stream_through(
    start_gateway: StartGateway,
    sdk: MakeClient,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
) -> None:
    call = ToolCallScript("get_weather", ('{"ci', 'ty": "Pa', 'ris"}'), call_id="call_up_1")
    fake_upstream.script = Script(content=(), tool_calls=(call,))
    gw = await start_gateway(upstream_config(fake_upstream.base_url))
    client = sdk(gw, await gw.new_key())
    tools: Any = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    async with client.chat.completions.stream(model="up", messages=HELLO, tools=tools) as stream:
        final = await stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    (got,) = choice.message.tool_calls
    assert got.id == "call_up_1"
    assert got.function.name == "get_weather"
    assert json.loads(got.function.arguments) == {"city": "Paris"}

    reply = await client.chat.completions.create(model="up", messages=HELLO, tools=tools)
    assert reply.choices[0].message.tool_calls is not None
    assert reply.choices[0].message.tool_calls[0].function.arguments == '{"city": "Paris"}'


@pytest.mark.parametrize("stream", [False, True])
async def test_upstream_usage_is_billed_exactly(
    start_gateway: StartGateway,
    sdk: MakeClient,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
    stream: bool,
) -> None:
    usage = {
        "prompt_tokens": 1234,
        "completion_tokens": 567,
        "total_tokens": 1801,
        "prompt_tokens_details": {"cached_tokens": 1000},
        "completion_tokens_details": {"reasoning_tokens": 100},
    }
    fake_upstream.script = Script(usage=usage)
    pricing = "{input: 0.15, output: 0.6, cached_input: 0.075}"
    gw = await start_gateway(upstream_config(fake_upstream.base_url, pricing=pricing))
    key, secret = await gw.new_key_record(balance=1_000_000)
    client = sdk(gw, secret)
    if stream:
        chunks = await client.chat.completions.create(
            model="up", messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
        seen = [c async for c in chunks][-1].usage
    else:
        seen = (await client.chat.completions.create(model="up", messages=HELLO)).usage
    assert seen is not None
    assert (seen.prompt_tokens, seen.completion_tokens) == (1234, 567)

    (entry,) = await usage_entries(gw, key.id)
    exact = (
        (1234 - 1000) * Decimal("0.15") + 1000 * Decimal("0.075") + 567 * Decimal("0.6")
    )  # 35.1 + 75 + 340.2 = 450.3
    assert entry.amount == -math.ceil(exact) == -451
    assert entry.usage is not None
    assert entry.usage.input_tokens == 1234
    assert entry.usage.output_tokens == 567
    assert entry.usage.cached_input_tokens == 1000
    assert entry.usage.reasoning_tokens == 100
    assert not entry.usage.estimated
    assert entry.agent == "up" and entry.backend == "upstream"
    assert await gw.store.balance(key.id) == 1_000_000 - 451


@pytest.mark.parametrize(
    ("upstream_status", "status", "error_class"),
    [
        (400, 400, openai.BadRequestError),
        (422, 400, openai.BadRequestError),
        (413, 413, openai.APIStatusError),
        (429, 429, openai.RateLimitError),
        (401, 502, openai.InternalServerError),  # the gateway's upstream secret is wrong
        (403, 502, openai.InternalServerError),
        (404, 502, openai.InternalServerError),
        (500, 502, openai.InternalServerError),
        (503, 502, openai.InternalServerError),
    ],
)
async def test_upstream_error_statuses_are_mapped(
    start_gateway: StartGateway,
    sdk: MakeClient,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
    upstream_status: int,
    status: int,
    error_class: type[openai.APIStatusError],
) -> None:
    """The gateway's side of a backend's error status (which status a backend reports is
    the backend contract's, tests/contract): in both dialects, streamed or not."""
    fake_upstream.script = Script(status=upstream_status)
    gw = await start_gateway(upstream_config(fake_upstream.base_url))
    key, secret = await gw.new_key_record()
    client = sdk(gw, secret)
    for stream in (False, True):
        with pytest.raises(error_class) as caught:
            await client.chat.completions.create(model="up", messages=HELLO, stream=stream)
        assert caught.value.status_code == status
        body = caught.value.response.json()
        assert set(body["error"]) == {"message", "type", "param", "code"}
        # The upstream's own message, and an upstream's authentication failure must not
        # look like the client's own.
        assert f"fake upstream error {upstream_status}" in caught.value.message
        assert caught.value.status_code != 401
    with pytest.raises(error_class) as caught:
        await client.responses.create(model="up", input="x")
    assert caught.value.status_code == status
    await asyncio.sleep(0.1)
    assert [e.kind for e in await gw.store.ledger(key.id)] == ["credit"]  # nothing billed


async def test_the_upstream_secret_never_reaches_an_error_message(
    start_gateway: StartGateway,
    sdk: MakeClient,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Upstreams that quote the gateway's key back: in an error answer (here straddling
    the point where a long body is cut short) or in a mid-stream error chunk."""
    quoted = f"Incorrect API key provided: {upstream_env}."
    fake_upstream.enqueue(
        Script(status=401, error_body=b"x" * 490 + upstream_env.encode()),
        Script(status=401, error_body=orjson.dumps({"error": {"message": quoted}})),
        Script(content=("a ", "b "), error_after=1, error_message=quoted),
    )
    gw = await start_gateway(upstream_config(fake_upstream.base_url))
    client = sdk(gw, await gw.new_key())
    messages = []
    for _ in range(2):
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(model="up", messages=HELLO)
        messages.append(caught.value.message)
    stream = await client.chat.completions.create(model="up", messages=HELLO, stream=True)
    with pytest.raises(openai.APIError) as mid_stream:
        _ = [c async for c in stream]
    messages.append(mid_stream.value.message)
    assert "xxx" in messages[0] and all("Incorrect API key" in m for m in messages[1:])
    for text in (*messages, caplog.text):
        assert upstream_env not in text and upstream_env[:8] not in text


async def test_upstream_non_json_error_body(
    start_gateway: StartGateway,
    sdk: MakeClient,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
) -> None:
    fake_upstream.script = Script(status=502, error_body=b"<html>Bad Gateway</html>")
    gw = await start_gateway(upstream_config(fake_upstream.base_url))
    client = sdk(gw, await gw.new_key())
    with pytest.raises(openai.InternalServerError) as caught:
        await client.chat.completions.create(model="up", messages=HELLO)
    assert caught.value.status_code == 502


async def test_stream_cut_midway(
    start_gateway: StartGateway,
    sdk: MakeClient,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
) -> None:
    content = ("one ", "two ", "three ", "four ", "five ")
    fake_upstream.script = Script(content=content, cut_after=2)
    gw = await start_gateway(upstream_config(fake_upstream.base_url, always_stream="true"))
    client = sdk(gw, await gw.new_key())

    stream = await client.chat.completions.create(model="up", messages=HELLO, stream=True)
    received: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            if chunk.choices:
                received.append(chunk.choices[0].delta.content or "")
                assert chunk.choices[0].finish_reason is None  # never a clean finish
    assert "".join(received) == "one two "  # what arrived before the cut
    assert not isinstance(caught.value, openai.APIStatusError)  # the 200 stream already began

    with pytest.raises(openai.InternalServerError) as caught_status:
        await client.chat.completions.create(model="up", messages=HELLO)
    assert caught_status.value.status_code == 502


async def test_stream_without_finish_or_done_is_an_error(
    start_gateway: StartGateway,
    sdk: MakeClient,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
) -> None:
    # A clean HTTP end, but the upstream never said the answer was complete.
    fake_upstream.script = Script(send_finish=False, send_done=False, usage=None)
    gw = await start_gateway(upstream_config(fake_upstream.base_url, always_stream="true"))
    client = sdk(gw, await gw.new_key())
    with pytest.raises(openai.InternalServerError) as caught:
        await client.chat.completions.create(model="up", messages=HELLO)
    assert caught.value.status_code == 502


async def test_raw_upstream_stream_frames(
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
) -> None:
    """The gateway's own frames: ``data: {json}``, no ``event:`` lines, ``[DONE]`` last."""
    gw = await start_gateway(upstream_config(fake_upstream.base_url))
    headers = {"Authorization": f"Bearer {await gw.new_key()}"}
    body = {"model": "up", "messages": HELLO, "stream": True}
    async with http.post(f"{gw.url}/v1/chat/completions", json=body, headers=headers) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/event-stream"
        text = (await resp.read()).decode()
    frames = [f for f in text.split("\n\n") if f]
    assert all(f.startswith("data: ") and "\n" not in f for f in frames)
    assert frames[-1] == "data: [DONE]"
    chunks = [json.loads(f[len("data: ") :]) for f in frames[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0]["delta"] == {}
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(
    "extra",
    [
        b'"seed": 123456789012345678901234567890',
        b'"max_tokens": 1e30',
        b'"max_completion_tokens": 18446744073709551616',
    ],
    ids=["seed", "max_tokens", "max_completion_tokens"],
)
async def test_out_of_range_integers_are_400_not_5xx(
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
    extra: bytes,
) -> None:
    """JSON integers beyond 64 bits cannot be forwarded upstream: the client's mistake, a 400."""
    gw = await start_gateway(upstream_config(fake_upstream.base_url))
    headers = {"Authorization": f"Bearer {await gw.new_key()}", "Content-Type": "application/json"}
    body = b'{"model": "up", "messages": [{"role": "user", "content": "x"}], ' + extra + b"}"
    async with http.post(f"{gw.url}/v1/chat/completions", data=body, headers=headers) as resp:
        assert resp.status == 400, await resp.text()
        error = (await resp.json())["error"]
        assert error["type"] == "invalid_request_error"


async def test_upstream_stalls_mid_stream(
    start_gateway: StartGateway,
    sdk: MakeClient,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
) -> None:
    fake_upstream.script = Script(content=("a ", "b ", "c "), stall_after=2)
    gw = await start_gateway(
        upstream_config(fake_upstream.base_url, timeout=0.5, always_stream="true")
    )
    client = sdk(gw, await gw.new_key())

    stream = await client.chat.completions.create(model="up", messages=HELLO, stream=True)
    received: list[str] = []
    started = time.monotonic()
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "a b "
    assert "timed out" in caught.value.message
    assert time.monotonic() - started < 3.0
    await fake_upstream.wait_disconnect(timeout=1.0)  # the gateway let go of the upstream

    with pytest.raises(openai.APIStatusError) as status:
        await client.chat.completions.create(model="up", messages=HELLO)
    assert status.value.status_code == 504


async def test_mid_stream_error_chunk(
    start_gateway: StartGateway,
    sdk: MakeClient,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
) -> None:
    fake_upstream.script = Script(content=("a ", "b ", "c "), error_after=2)
    gw = await start_gateway(upstream_config(fake_upstream.base_url, always_stream="true"))
    client = sdk(gw, await gw.new_key())
    stream = await client.chat.completions.create(model="up", messages=HELLO, stream=True)
    received: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "a b "
    assert "overloaded" in caught.value.message
    assert not isinstance(caught.value, openai.APIStatusError)  # the 200 stream had begun

    with pytest.raises(openai.InternalServerError) as status:
        await client.chat.completions.create(model="up", messages=HELLO)
    assert status.value.status_code == 502

    # Before any content, the same error is an HTTP error, streamed or not.
    fake_upstream.script = Script(error_after=0)
    for stream in (False, True):
        with pytest.raises(openai.InternalServerError) as status:
            await client.chat.completions.create(model="up", messages=HELLO, stream=stream)
        assert status.value.status_code == 502
        assert "overloaded" in status.value.message


async def test_wire_variations_decode(
    start_gateway: StartGateway,
    sdk: MakeClient,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
) -> None:
    """Keep-alive comments, CRLF line ends and frames split across writes change nothing."""
    content = ("caf\u00e9 ", "\u2603 ", "\U0001f600 ", "done")
    usage = {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11}
    fake_upstream.script = Script(
        content=content, usage=usage, keepalive=True, crlf=True, write_size=3
    )
    gw = await start_gateway(upstream_config(fake_upstream.base_url))
    key, secret = await gw.new_key_record()
    client = sdk(gw, secret)
    stream = await client.chat.completions.create(
        model="up", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "".join(
        content
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4
    (entry,) = await usage_entries(gw, key.id)
    assert entry.amount == -(7 + 2 * 4)


async def test_failed_upstream_is_not_billed(
    start_gateway: StartGateway,
    sdk: MakeClient,
    fake_upstream: FakeOpenAIUpstream,
    upstream_env: str,
) -> None:
    fake_upstream.script = Script(status=500)
    gw = await start_gateway(upstream_config(fake_upstream.base_url))
    key, secret = await gw.new_key_record(balance=100_000)
    with pytest.raises(openai.InternalServerError):
        await sdk(gw, secret).chat.completions.create(model="up", messages=HELLO)
    await asyncio.sleep(0.2)
    assert [e.kind for e in await gw.store.ledger(key.id)] == ["credit"]  # no usage entry
    assert await gw.store.balance(key.id) == 100_000
    assert await gw.store.held(key.id) == 0  # the hold was released
