"""The gateway in front of LibreChat: SDK -> gateway -> fake LibreChat Agents API.

Both of LibreChat's endpoints are backends: ``librechat`` (its Chat
Completions endpoint) and ``open_responses`` with ``hold_tool_calls`` (its Open
Responses endpoint). The configuration is ``docs/librechat.gateway.yaml`` itself,
pointed at the fake.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from gateway.config import parse_config
from tests.conftest import RunningGateway, StartGateway
from tests.fakes.librechat_upstream import (
    LIBRECHAT_KEY,
    Agent,
    ChatScript,
    FakeLibreChat,
    LibreChatTool,
)
from tests.fakes.open_responses_upstream import FunctionCallScript, ResponsesScript
from tests.integration.conftest import MakeClient
from tests.integration.responses_support import Clients
from tests.integration.support import usage_entries

DOCS_CONFIG = Path(__file__).parents[2] / "docs" / "librechat.gateway.yaml"
HELLO: Any = [{"role": "user", "content": "hello LibreChat"}]
# The agent ids routed in docs/librechat.gateway.yaml.
SUPPORT_AGENT = "agent_Xk2mT9qLp4Rz"
RESEARCH_AGENT = "agent_R7vNw2HcQe5s"


@pytest.fixture
def librechat_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("LIBRECHAT_API_KEY", LIBRECHAT_KEY)
    return LIBRECHAT_KEY


@pytest.fixture
async def librechat(librechat_env: str) -> AsyncIterator[FakeLibreChat]:
    fake = await FakeLibreChat(agents=(SUPPORT_AGENT, RESEARCH_AGENT)).start()
    yield fake
    await fake.close()


def docs_config(fake: FakeLibreChat) -> str:
    """The documented example, pointed at the fake LibreChat."""
    text = DOCS_CONFIG.read_text(encoding="utf-8")
    assert "http://librechat:3080" in text
    return text.replace("http://librechat:3080", fake.url)


async def gateway(start_gateway: StartGateway, fake: FakeLibreChat) -> RunningGateway:
    return await start_gateway(docs_config(fake))


def test_docs_example_is_a_valid_configuration(librechat_env: str) -> None:
    config = parse_config(DOCS_CONFIG.read_text(encoding="utf-8"), str(DOCS_CONFIG))
    assert {name: spec.type for name, spec in config.backends.items()} == {
        "librechat": "librechat",
        "librechat-responses": "open_responses",
    }
    assert config.routes["support"].model == SUPPORT_AGENT
    assert not config.routes["support"].pricing.free


# The chat endpoint (backend type ``librechat``)


@pytest.mark.parametrize("stream", [False, True])
async def test_chat_answer_and_keys(
    start_gateway: StartGateway,
    sdk: MakeClient,
    librechat: FakeLibreChat,
    stream: bool,
) -> None:
    librechat.chat = ChatScript(reasoning=("Let me think.",), content=("Hi", " there"))
    gw = await gateway(start_gateway, librechat)
    key = await gw.new_key()
    client = sdk(gw, key)
    if stream:
        chunks = [
            c
            async for c in await client.chat.completions.create(
                model="support", messages=HELLO, stream=True
            )
        ]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        reasoning = "".join(
            getattr(c.choices[0].delta, "reasoning_content", None) or ""
            for c in chunks
            if c.choices
        )
        assert reasoning == "Let me think."
    else:
        reply = await client.chat.completions.create(model="support", messages=HELLO)
        text = reply.choices[0].message.content or ""
        assert reply.model == "support"  # the gateway's agent id, not LibreChat's
    assert text == "Hi there"
    received = librechat.last
    assert received.path == "/api/agents/v1/chat/completions"
    assert received.body["model"] == SUPPORT_AGENT
    assert received.headers["Authorization"] == f"Bearer {LIBRECHAT_KEY}"
    assert key not in str(dict(received.headers)) and key not in str(received.body)


async def test_chat_request_is_normalised(
    start_gateway: StartGateway, sdk: MakeClient, librechat: FakeLibreChat
) -> None:
    gw = await gateway(start_gateway, librechat)
    client = sdk(gw, await gw.new_key())
    tool: Any = {"type": "function", "function": {"name": "lookup", "parameters": {}}}
    reply = await client.chat.completions.create(
        model="support",
        messages=[
            {"role": "developer", "content": "be brief"},  # LibreChat would answer 400
            {"role": "user", "content": "hi"},
        ],
        tools=[tool],
        temperature=0.2,
        max_tokens=50,
        response_format={"type": "json_object"},
    )
    assert reply.choices[0].message.content == "Hello from LibreChat"
    body = librechat.last.body
    # LibreChat would refuse developer (400), and an Anthropic agent a late system message.
    assert body["messages"] == [{"role": "user", "content": "be brief\n\nhi"}]
    assert set(body) == {"model", "messages", "stream"}


async def test_responses_client_over_the_chat_endpoint(
    start_gateway: StartGateway, clients: Clients, librechat: FakeLibreChat
) -> None:
    librechat.chat = ChatScript(reasoning=("ok",), content=("Answer.",))
    gw = await gateway(start_gateway, librechat)
    client = clients(gw, await gw.new_key())
    async with client.responses.stream(model="support", input="hi") as stream:
        final = await stream.get_final_response()
    assert final.status == "completed"
    assert final.output_text == "Answer."
    assert [i.type for i in final.output] == ["reasoning", "message"]
    again = await client.responses.create(
        model="support", input="and then?", previous_response_id=final.id
    )
    assert again.output_text == "Answer."
    # LibreChat's own previous_response_id is a conversation id: the gateway sends the history.
    assert [m["role"] for m in librechat.last.body["messages"]] == ["user", "assistant", "user"]


async def test_librechat_tools_never_reach_the_client(
    start_gateway: StartGateway, sdk: MakeClient, librechat: FakeLibreChat
) -> None:
    tools = (LibreChatTool("web_search", '{"q": "news"}'), LibreChatTool("calc", "{}", "call_2"))
    librechat.chat = ChatScript(tools=tools, content=("Here is the news.",))
    gw = await gateway(start_gateway, librechat)
    client = sdk(gw, await gw.new_key())
    reply = await client.chat.completions.create(model="support", messages=HELLO)
    assert reply.choices[0].message.tool_calls is None
    assert reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].message.content == "Here is the news."
    chunks = [
        c
        async for c in await client.chat.completions.create(
            model="support", messages=HELLO, stream=True
        )
    ]
    assert not any(c.choices[0].delta.tool_calls for c in chunks if c.choices)


@pytest.mark.parametrize("stream", [False, True])
async def test_usage_from_the_final_chunk_is_billed_exactly(
    start_gateway: StartGateway, sdk: MakeClient, librechat: FakeLibreChat, stream: bool
) -> None:
    # LibreChat's final chunk (handlers.ts sendFinalChunk): never prompt_tokens_details.
    usage = {
        "prompt_tokens": 2000,
        "completion_tokens": 300,
        "total_tokens": 2300,
        "completion_tokens_details": {"reasoning_tokens": 100},
    }
    librechat.chat = ChatScript(usage=usage)
    gw = await gateway(start_gateway, librechat)
    key, secret = await gw.new_key_record(balance=1_000_000)
    client = sdk(gw, secret)
    if stream:
        chunks = [
            c
            async for c in await client.chat.completions.create(
                model="support",
                messages=HELLO,
                stream=True,
                stream_options={"include_usage": True},
            )
        ]
        seen = chunks[-1].usage
    else:
        seen = (await client.chat.completions.create(model="support", messages=HELLO)).usage
    assert seen is not None and (seen.prompt_tokens, seen.completion_tokens) == (2000, 300)
    (entry,) = await usage_entries(gw, key.id)
    # support: input 3.0, output 15.0 credits per token; no cached input is reported
    exact = 2000 * Decimal("3.0") + 300 * Decimal("15.0")
    assert entry.amount == -math.ceil(exact) == -10500
    assert entry.usage is not None and not entry.usage.estimated
    assert entry.usage.cached_input_tokens == 0
    assert entry.usage.reasoning_tokens == 100
    assert entry.backend == "librechat" and entry.agent == "support"


async def test_error_text_is_a_failure(
    start_gateway: StartGateway, sdk: MakeClient, librechat: FakeLibreChat
) -> None:
    librechat.chat = ChatScript(content=("Partial ", "answer"), error="Provider overloaded")
    gw = await gateway(start_gateway, librechat)
    key, secret = await gw.new_key_record()
    client = sdk(gw, secret)
    stream = await client.chat.completions.create(model="support", messages=HELLO, stream=True)
    received: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            if chunk.choices:
                received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "Partial answer"  # and never "\n\nError: ..."
    assert "Provider overloaded" in caught.value.message

    with pytest.raises(openai.InternalServerError) as status:
        await client.chat.completions.create(model="support", messages=HELLO)
    assert status.value.status_code == 502
    assert "Provider overloaded" in status.value.message
    # LibreChat reports no usage with a failure: what was delivered is billed by estimate.
    entries = await usage_entries(gw, key.id, count=2)
    for entry in entries:
        assert entry.usage is not None and entry.usage.estimated
        assert entry.usage.input_tokens > 0 and entry.usage.output_tokens > 0
        assert entry.amount < 0


async def test_provider_rate_limit_after_the_headers_is_a_429(
    start_gateway: StartGateway, sdk: MakeClient, librechat: FakeLibreChat
) -> None:
    """Streaming, LibreChat has sent its headers before the provider answers 429: the
    error text keeps the status, so the client gets a 429 (and a route may fall back)."""
    librechat.chat = ChatScript(content=(), error="429 Rate limit reached for requests")
    gw = await gateway(start_gateway, librechat)
    key, secret = await gw.new_key_record()
    client = sdk(gw, secret)
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="support", messages=HELLO)
    assert "Rate limit reached" in caught.value.message
    assert [e.kind for e in await gw.store.ledger(key.id)] == ["credit"]  # nothing delivered


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("forbidden", "Forbidden: Insufficient permissions"),
        ("wrong_key", "Invalid API key"),
        ("unknown_agent", "Agent not found"),
    ],
)
async def test_librechat_refusals_are_502(
    start_gateway: StartGateway,
    sdk: MakeClient,
    librechat: FakeLibreChat,
    monkeypatch: pytest.MonkeyPatch,
    setup: str,
    message: str,
) -> None:
    if setup == "forbidden":
        librechat.forbidden = True
    elif setup == "wrong_key":
        librechat.key = "sk-" + "cd" * 32
    else:
        librechat.agents = ()
    gw = await gateway(start_gateway, librechat)
    key, secret = await gw.new_key_record()
    client = sdk(gw, secret)
    for model in ("support", "research-responses"):
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(model=model, messages=HELLO)
        assert caught.value.status_code == 502  # the client's key is fine
        assert message in caught.value.message
    assert [e.kind for e in await gw.store.ledger(key.id)] == ["credit"]  # nothing billed


async def test_gateway_checks_what_librechat_does_not(
    start_gateway: StartGateway, sdk: MakeClient, librechat: FakeLibreChat
) -> None:
    """Balance (402 before any upstream call) and per-key agent scopes (403)."""
    gw = await gateway(start_gateway, librechat)
    broke = sdk(gw, await gw.new_key(balance=0))
    with pytest.raises(openai.APIStatusError) as caught:
        await broke.chat.completions.create(model="support", messages=HELLO)
    assert caught.value.status_code == 402
    scoped = sdk(gw, await gw.new_key(agents=("research",)))
    with pytest.raises(openai.PermissionDeniedError):
        await scoped.chat.completions.create(model="support", messages=HELLO)
    assert librechat.requests == []  # LibreChat never saw either
    assert (await scoped.chat.completions.create(model="research", messages=HELLO)).choices


# The Open Responses endpoint (backend type ``open_responses``, hold_tool_calls)


@pytest.mark.parametrize("stream", [False, True])
async def test_responses_endpoint(
    start_gateway: StartGateway,
    clients: Clients,
    librechat: FakeLibreChat,
    stream: bool,
) -> None:
    ran = FunctionCallScript("web_search", ('{"q":', '"x"}'), call_id="call_ran", output="found")
    librechat.script = ResponsesScript(
        librechat=True, reasoning=("thinking",), function_calls=(ran,), content=("Done.",)
    )
    gw = await gateway(start_gateway, librechat)
    key = await gw.new_key()
    client = clients(gw, key)
    if stream:
        async with client.responses.stream(model="research-responses", input="go") as events:
            final = await events.get_final_response()
    else:
        final = await client.responses.create(model="research-responses", input="go")
    assert final.status == "completed"
    assert final.output_text == "Done."
    assert [i.type for i in final.output] == ["reasoning", "message"]  # no call LibreChat ran
    received = librechat.last
    assert received.path == "/api/agents/v1/responses"
    assert received.body["model"] == RESEARCH_AGENT
    assert received.body["store"] is False
    assert received.headers["Authorization"] == f"Bearer {LIBRECHAT_KEY}"
    assert key not in str(dict(received.headers))


async def test_responses_endpoint_client_tool_call(
    start_gateway: StartGateway, sdk: MakeClient, librechat: FakeLibreChat
) -> None:
    """A call without an output is the client's, even when .done events never come."""
    calls = (
        FunctionCallScript("web_search", ("{}",), call_id="call_ran", output="found"),
        FunctionCallScript("client_lookup", ('{"id":', " 7}"), call_id="call_client"),
    )
    librechat.script = ResponsesScript(librechat=True, function_calls=calls, content=())
    gw = await gateway(start_gateway, librechat)
    client = sdk(gw, await gw.new_key())
    tool: Any = {"type": "function", "function": {"name": "client_lookup", "parameters": {}}}
    reply = await client.chat.completions.create(
        model="research-responses", messages=HELLO, tools=[tool]
    )
    assert reply.choices[0].finish_reason == "tool_calls"
    calls_seen = reply.choices[0].message.tool_calls
    assert calls_seen is not None
    assert [(c.id, c.function.arguments) for c in calls_seen] == [("call_client", '{"id": 7}')]  # type: ignore[union-attr]


async def test_responses_endpoint_error_mid_stream(
    start_gateway: StartGateway, sdk: MakeClient, librechat: FakeLibreChat
) -> None:
    """LibreChat's failed run (responses.js): a bare ``[DONE]``, no error event."""
    librechat.script = ResponsesScript(librechat=True, content=("a ", "b ", "c "), error_after=2)
    gw = await gateway(start_gateway, librechat)
    client = sdk(gw, await gw.new_key())
    stream = await client.chat.completions.create(
        model="research-responses", messages=HELLO, stream=True
    )
    received: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            if chunk.choices:
                received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "a b "
    assert "no response.completed" in caught.value.message


async def test_responses_endpoint_usage_billed(
    start_gateway: StartGateway, sdk: MakeClient, librechat: FakeLibreChat
) -> None:
    usage = {
        "input_tokens": 400,
        "output_tokens": 100,
        "total_tokens": 500,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    }
    librechat.script = ResponsesScript(librechat=True, usage=usage)
    gw = await gateway(start_gateway, librechat)
    key, secret = await gw.new_key_record()
    await sdk(gw, secret).chat.completions.create(model="research-responses", messages=HELLO)
    (entry,) = await usage_entries(gw, key.id)
    assert entry.amount == -math.ceil(400 * Decimal("0.15") + 100 * Decimal("0.60")) == -120


@pytest.mark.parametrize("stream", [False, True])
async def test_an_agent_with_streaming_off_answers_json_to_a_stream(
    start_gateway: StartGateway, sdk: MakeClient, librechat: FakeLibreChat, stream: bool
) -> None:
    """openai.js: ``isStreaming = request.stream === true && !streamingDisabled``; the
    backend reads the JSON answer as the stream it asked for, and bills it."""
    librechat.agents = (Agent(SUPPORT_AGENT, disable_streaming=True),)
    librechat.chat = ChatScript(reasoning=("Hmm.",), content=("Hi", " there"))
    gw = await gateway(start_gateway, librechat)
    key, secret = await gw.new_key_record()
    client = sdk(gw, secret)
    if stream:
        chunks = [
            c
            async for c in await client.chat.completions.create(
                model="support", messages=HELLO, stream=True
            )
        ]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert chunks[-1].choices[0].finish_reason == "stop"
    else:
        reply = await client.chat.completions.create(model="support", messages=HELLO)
        text = reply.choices[0].message.content or ""
    assert text == "Hi there"
    assert librechat.last.body["stream"] is True  # LibreChat is always asked for a stream
    (entry,) = await usage_entries(gw, key.id)
    assert entry.usage is not None and not entry.usage.estimated
    assert entry.amount < 0


# The /api/agents/v1 alias, for LibreChat's own clients


@pytest.mark.parametrize("stream", [False, True])
async def test_alias_reasoning_is_where_librechat_clients_read_it(
    start_gateway: StartGateway,
    http: aiohttp.ClientSession,
    librechat: FakeLibreChat,
    stream: bool,
) -> None:
    """LibreChat's openai.js streams ``delta.reasoning`` and answers ``message.reasoning``;
    /v1 keeps ``reasoning_content``."""
    librechat.chat = ChatScript(reasoning=("Let me think.",), content=("Hi",))
    gw = await gateway(start_gateway, librechat)
    headers = {"Authorization": f"Bearer {await gw.new_key()}"}
    body = {"model": "support", "messages": HELLO, "stream": stream}
    for prefix, field in (("/api/agents/v1", "reasoning"), ("/v1", "reasoning_content")):
        async with http.post(
            f"{gw.url}{prefix}/chat/completions", json=body, headers=headers
        ) as resp:
            assert resp.status == 200
            raw = await resp.read()
        if stream:
            chunks = [
                orjson.loads(line[6:]) for line in raw.split(b"\n") if line.startswith(b"data: {")
            ]
            deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
            assert "".join(d.get(field, "") for d in deltas) == "Let me think."
            assert not any(set(d) & {"reasoning", "reasoning_content"} - {field} for d in deltas)
        else:
            message = orjson.loads(raw)["choices"][0]["message"]
            assert message[field] == "Let me think."


async def test_alias_models_as_librechat_serves_them(
    start_gateway: StartGateway, http: aiohttp.ClientSession, librechat: FakeLibreChat
) -> None:
    """LibreChat serves GET /models/:model (openai.js GetModelController) and
    GET /responses/models (routes/agents/responses.js); so does the alias."""
    gw = await gateway(start_gateway, librechat)
    headers = {"Authorization": f"Bearer {await gw.new_key(agents=('support',))}"}
    base = f"{gw.url}/api/agents/v1"
    async with http.get(f"{base}/models/support", headers=headers) as resp:
        assert resp.status == 200
        assert (await resp.json())["id"] == "support"
    async with http.get(f"{base}/models/research", headers=headers) as resp:
        assert resp.status == 404  # not this key's: as if it did not exist
        assert (await resp.json())["error"]["code"] == "model_not_found"
    async with http.get(f"{gw.url}/v1/models/support", headers=headers) as resp:
        assert resp.status == 200
    async with http.get(f"{base}/responses/models", headers=headers) as resp:
        assert resp.status == 200
        assert [m["id"] for m in (await resp.json())["data"]] == ["support"]
    async with http.get(f"{base}/responses/models") as resp:
        assert resp.status == 401
