"""The ``librechat`` backend: its request normalisation, options, and its stream
against the fake LibreChat (``tests/fakes/librechat_upstream.py``) without a gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from gateway_plugins.backends.librechat import LibreChatBackend, LibreChatOptions
from gateway_plugins.backends.openai_wire import ChunkParser

from gateway.config import parse_config
from gateway.errors import ConfigError, RateLimited, UpstreamError
from gateway.events import (
    Completed,
    Event,
    ReasoningDelta,
    TextDelta,
    ToolCallArgumentsDelta,
    ToolCallStarted,
    Usage,
)
from gateway.invocation import (
    AgentInvocation,
    ForcedFunction,
    FunctionCall,
    FunctionCallOutput,
    FunctionTool,
    Message,
    ResponseFormat,
    Sampling,
    TextPart,
)
from gateway.plugin import CallContext
from gateway.route import Route
from tests.conftest import invocation
from tests.fakes.librechat_upstream import (
    AGENT_ID,
    LIBRECHAT_KEY,
    ChatScript,
    FakeLibreChat,
    LibreChatTool,
)
from tests.gateway.factories import collect

ENV = "LIBRECHAT_TEST_KEY"


def ctx(inv: AgentInvocation) -> CallContext:
    return CallContext(
        request_id="req_lc_1",
        key_id="key_1",
        agent=inv.agent,
        backend="librechat",
        model=AGENT_ID,
        route=Route(backend="librechat", model=AGENT_ID),
        invocation=inv,
        charge_id="c1",
    )


def backend(base_url: str = "http://127.0.0.1:9/api/agents/v1") -> LibreChatBackend:
    return LibreChatBackend("librechat", LibreChatOptions(base_url=base_url, api_key_env=ENV))


# The request


def test_body_keeps_only_what_librechat_uses_and_rewrites_developer() -> None:
    schema = {"type": "object", "properties": {}}
    inv = invocation(
        input=(
            Message("developer", (TextPart("be terse"),)),
            Message("user", (TextPart("weather?"),)),
            FunctionCall("call_1", "get_weather", "{}"),
            FunctionCallOutput("call_1", "sunny"),
        ),
        instructions="You are helpful.",
        tools=(FunctionTool("get_weather", None, schema),),
        tool_choice=ForcedFunction("get_weather"),
        parallel_tool_calls=True,
        sampling=Sampling(temperature=0.1, top_p=0.5, seed=3, stop=("X",)),
        max_output_tokens=100,
        response_format=ResponseFormat("json_object"),
        reasoning_effort="high",
    )
    body = backend().body(inv, ctx(inv))
    assert body == {
        "model": AGENT_ID,
        "messages": [
            {"role": "system", "content": "You are helpful."},
            {"role": "system", "content": "be terse"},
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_headers_carry_the_service_key_and_request_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, LIBRECHAT_KEY)
    inv = invocation()
    assert backend().headers(ctx(inv)) == {
        "X-Request-Id": "req_lc_1",
        "Authorization": f"Bearer {LIBRECHAT_KEY}",
    }


def test_api_key_env_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    text = """
backends:
  lc: {type: librechat, base_url: "http://librechat:3080/api/agents/v1"}
routes:
  a: {backend: lc, model: agent_abc}
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "g.yaml")
    assert any(p.path == "backends.lc.api_key_env" for p in caught.value.problems)

    with pytest.raises(ConfigError, match="LIBRECHAT_TEST_KEY is not set"):
        parse_config(text.replace("type: librechat,", f"type: librechat, api_key_env: {ENV},"))
    monkeypatch.setenv(ENV, "x")
    config = parse_config(text.replace("type: librechat,", f"type: librechat, api_key_env: {ENV},"))
    assert isinstance(config.backends["lc"].options, LibreChatOptions)


def test_chunk_parser_reads_usage_from_the_final_non_empty_chunk() -> None:
    """LibreChat puts usage on the chunk with the finish reason, choices not empty."""
    parser = ChunkParser()
    final = {
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 21, "completion_tokens": 4, "total_tokens": 25},
    }
    assert list(parser.feed({"choices": [{"index": 0, "delta": {"content": "hi"}}]})) == [
        TextDelta("hi")
    ]
    assert list(parser.feed(final)) == []
    assert list(parser.finish(done=True)) == [Usage(21, 4), Completed("stop")]


# The stream, against the fake LibreChat


@pytest.fixture
async def librechat(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeLibreChat]:
    monkeypatch.setenv(ENV, LIBRECHAT_KEY)
    fake = await FakeLibreChat().start()
    yield fake
    await fake.close()


async def run(fake: FakeLibreChat, inv: AgentInvocation | None = None) -> list[Event]:
    inv = inv or invocation()
    lc = backend(fake.base_url)
    try:
        return await collect(lc.invoke(inv, ctx(inv)))
    finally:
        await lc.aclose()


async def test_text_reasoning_and_usage(librechat: FakeLibreChat) -> None:
    librechat.chat = ChatScript(reasoning=("thinking",), content=("Hi", " there"))
    assert await run(librechat) == [
        ReasoningDelta("thinking"),
        TextDelta("Hi"),
        TextDelta(" there"),
        Usage(21, 4),
        Completed("stop"),
    ]
    received = librechat.last
    assert received.path == "/api/agents/v1/chat/completions"
    assert received.headers["Authorization"] == f"Bearer {LIBRECHAT_KEY}"
    assert received.headers["X-Request-Id"] == "req_lc_1"
    assert received.body["model"] == AGENT_ID


async def test_librechat_tool_calls_are_not_the_clients(librechat: FakeLibreChat) -> None:
    tools = (LibreChatTool("web_search", '{"q":"x"}'), LibreChatTool("calc", "{}", "call_2"))
    librechat.chat = ChatScript(tools=tools, content=("Found it.",), finish_reason="tool_calls")
    events = await run(librechat)
    assert not [e for e in events if isinstance(e, ToolCallStarted | ToolCallArgumentsDelta)]
    assert events == [TextDelta("Found it."), Usage(21, 4), Completed("stop")]


async def test_error_text_is_a_failure_with_usage(librechat: FakeLibreChat) -> None:
    librechat.chat = ChatScript(content=("Partial",), error="Provider overloaded (529)")
    lc = backend(librechat.base_url)
    inv = invocation()
    events: list[Event] = []
    with pytest.raises(UpstreamError, match=r"Provider overloaded \(529\)") as caught:
        async for batch in lc.invoke(inv, ctx(inv)):
            events += batch
    await lc.aclose()
    assert caught.value.status == 502
    assert events == [TextDelta("Partial"), Usage(21, 4)]  # the error text never reaches the client


async def test_error_text_without_usage(librechat: FakeLibreChat) -> None:
    librechat.chat = ChatScript(content=(), error="boom", usage_on_error=False)
    with pytest.raises(UpstreamError, match="boom"):
        await run(librechat)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("forbidden", "403: Forbidden: Insufficient permissions"),
        ("wrong_key", "401: Invalid API key"),
        ("unknown_agent", "404: Agent not found"),
    ],
)
async def test_refusals_are_the_gateways_problem(
    librechat: FakeLibreChat, monkeypatch: pytest.MonkeyPatch, setup: str, message: str
) -> None:
    if setup == "forbidden":
        librechat.forbidden = True
    elif setup == "wrong_key":
        monkeypatch.setenv(ENV, "sk-wrong")
    else:
        librechat.agents = ("agent_other",)
    with pytest.raises(UpstreamError) as caught:
        await run(librechat)
    assert caught.value.status == 502  # never a 401/403 that looks like the client's key
    assert message in caught.value.message


async def test_provider_errors_keep_their_mapping(librechat: FakeLibreChat) -> None:
    """A provider's 429 passed through by LibreChat is a rate limit (the route may fall back)."""
    librechat.chat = ChatScript(status=429)
    with pytest.raises(RateLimited) as caught:
        await run(librechat)
    assert caught.value.status == 429
