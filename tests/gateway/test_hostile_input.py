"""Hostile input, property-tested: every parser either succeeds or fails cleanly.

Request side: whatever the body (arbitrary JSON, mutated valid requests with a
wrong type anywhere, deep nesting, huge arrays, lone surrogates, NaN,
duplicate keys, arbitrary bytes), parsing gives a canonical value or a
``GatewayError`` with a 4xx status, nothing else. Upstream side: whatever the
bytes and however they are split or cut off, the SSE decoder and each HTTP
backend's stream parser give events, or a ``GatewayError`` (which the pipeline
turns into a ``Failed`` event), never another exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import itertools
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from gateway_plugins.backends.anthropic import AnthropicBackend, AnthropicOptions
from gateway_plugins.backends.librechat import LibreChatBackend, LibreChatOptions
from gateway_plugins.backends.open_responses import OpenResponsesBackend, OpenResponsesOptions
from gateway_plugins.backends.openai_chat import OpenAIChatBackend, OpenAIChatOptions
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.dialects.chat_parse import parse_chat_request
from gateway.dialects.messages_parse import parse_messages_request
from gateway.dialects.request_limits import DefaultRequestLimits
from gateway.dialects.responses_parse import parse_responses_request
from gateway.errors import GatewayError
from gateway.events import (
    Completed,
    Failed,
    ReasoningDelta,
    TextDelta,
    ToolCallArgumentsDelta,
    ToolCallStarted,
    Usage,
)
from gateway.invocation import AgentInvocation
from gateway.sse import ServerSentEvent, SSEDecodeError, SSEDecoder
from tests.conftest import invocation
from tests.gateway.factories import context

FAST = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)

# Request bodies

CHAT_BASE: dict[str, Any] = {
    "model": "echo",
    "messages": [
        {"role": "system", "content": "be brief"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "hi"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}},
                {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:,x"}},
            ],
        },
        {
            "role": "assistant",
            "content": "ok",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "r"},
    ],
    "tools": [
        {
            "type": "function",
            "function": {"name": "f", "description": "d", "parameters": {"type": "object"}},
        }
    ],
    "tool_choice": {"type": "function", "function": {"name": "f"}},
    "temperature": 1,
    "top_p": 0.5,
    "n": 1,
    "max_tokens": 10,
    "stop": ["x"],
    "stream": True,
    "stream_options": {"include_usage": True},
    "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {}}},
    "metadata": {"a": "b"},
    "seed": 1,
    "user": "u",
}

RESPONSES_BASE: dict[str, Any] = {
    "model": "echo",
    "input": [
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "hi"},
                {"type": "input_image", "image_url": "https://x/y.png"},
            ],
        },
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "r"},
        {"type": "item_reference", "id": "msg_1"},
    ],
    "instructions": "be brief",
    "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
    "tool_choice": {"type": "allowed_tools", "tools": [{"type": "function", "name": "f"}]},
    "text": {"format": {"type": "json_schema", "name": "n", "schema": {}}, "verbosity": "low"},
    "reasoning": {"effort": "low", "summary": "auto"},
    "include": ["reasoning.encrypted_content"],
    "max_output_tokens": 100,
    "store": False,
    "stream": True,
    "metadata": {"k": "v"},
    "truncation": "auto",
}

MESSAGES_BASE: dict[str, Any] = {
    "model": "echo",
    "max_tokens": 4096,
    "system": [{"type": "text", "text": "be brief"}],
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "hi"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "aGk="},
                },
                {
                    "type": "document",
                    "source": {"type": "text", "media_type": "text/plain", "data": "x"},
                    "title": "t",
                },
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "t", "signature": "s"},
                {"type": "tool_use", "id": "t1", "name": "f", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "t1",
                    "content": [{"type": "text", "text": "r"}],
                    "is_error": False,
                }
            ],
        },
    ],
    "tools": [{"name": "f", "description": "d", "input_schema": {"type": "object"}}],
    "tool_choice": {"type": "tool", "name": "f"},
    "thinking": {"type": "enabled", "budget_tokens": 2048},
    "temperature": 0.5,
    "stop_sequences": ["x"],
    "metadata": {"user_id": "u"},
    "stream": True,
    "output_config": {"format": {"type": "json_schema", "schema": {}}},
}


def _chat(body: object) -> object:
    return parse_chat_request(body).invocation


def _responses(body: object) -> object:
    return parse_responses_request(body).invocation


def _messages(body: object) -> object:
    return parse_messages_request(body)


def _count(body: object) -> object:
    return parse_messages_request(body, count_only=True)


PARSERS: dict[str, tuple[Callable[[object], object], dict[str, Any]]] = {
    "chat": (_chat, CHAT_BASE),
    "responses": (_responses, RESPONSES_BASE),
    "messages": (_messages, MESSAGES_BASE),
    "count_tokens": (_count, MESSAGES_BASE),
}

# Keys the parsers read, so that mutations often hit a field they check.
KNOWN_KEYS = sorted(
    {
        key
        for _, base in PARSERS.values()
        for key in orjson.dumps(base).decode().split('"')[1::2]
        if key.isidentifier()
    }
)

TEXT = st.text(max_size=12)  # includes lone surrogates, NULs, any code point
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()  # NaN and infinities included: a Python caller could pass them
    | TEXT
    | st.sampled_from(KNOWN_KEYS)
)
JSON = st.recursive(
    LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KNOWN_KEYS) | TEXT, inner, max_size=4)
    ),
    max_leaves=16,
)


@st.composite
def mutated(draw: st.DrawFn, base: object) -> object:
    """``base`` with one to three edits anywhere: a value replaced, a key removed or added."""
    value = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        value = _mutate(draw, value)
    return value


def _mutate(draw: st.DrawFn, node: object) -> object:
    children: list[Any] = []
    if isinstance(node, dict):
        children = list(node)
    elif isinstance(node, list):
        children = list(range(len(node)))
    action = draw(st.sampled_from(["replace", "descend", "descend", "descend", "drop", "add"]))
    if not children or action == "replace":
        return draw(JSON)
    assert isinstance(node, dict | list)
    if action == "drop":
        del node[draw(st.sampled_from(children))]
    elif action == "add":
        if isinstance(node, dict):
            node[draw(st.sampled_from(KNOWN_KEYS))] = draw(JSON)
        else:
            node.append(draw(JSON))
    else:
        child = draw(st.sampled_from(children))
        node[child] = _mutate(draw, node[child])
    return node


def outcome(parse: Callable[[object], object], body: object) -> str:
    """Parse ``body``: ``ok``, or the 4xx status it fails with; anything else fails the test."""
    try:
        result = parse(body)
    except GatewayError as exc:
        assert 400 <= exc.status < 500, (exc.status, exc.message)
        assert exc.message
        return str(exc.status)
    assert isinstance(result, AgentInvocation)
    return "ok"


def outcome_of_bytes(parse: Callable[[object], object], raw: bytes) -> str:
    """As the server does it: orjson first (a decode error is a 400), then the parser."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return "400"
    return outcome(parse, body)


@pytest.mark.parametrize("dialect", sorted(PARSERS))
def test_the_base_requests_parse(dialect: str) -> None:
    parse, base = PARSERS[dialect]
    assert outcome(parse, base) == "ok"


@pytest.mark.parametrize("dialect", sorted(PARSERS))
def test_mutated_requests_parse_or_fail_with_a_4xx(dialect: str) -> None:
    parse, base = PARSERS[dialect]

    @FAST
    @given(mutated(base))
    def check(body: object) -> None:
        outcome(parse, body)

    check()


@pytest.mark.parametrize("dialect", sorted(PARSERS))
def test_arbitrary_json_parses_or_fails_with_a_4xx(dialect: str) -> None:
    parse, _ = PARSERS[dialect]

    @settings(FAST, max_examples=100)
    @given(JSON)
    def check(body: object) -> None:
        outcome(parse, body)

    check()


@pytest.mark.parametrize("dialect", sorted(PARSERS))
def test_arbitrary_bytes_parse_or_fail_with_a_4xx(dialect: str) -> None:
    parse, base = PARSERS[dialect]
    valid = orjson.dumps(base)

    @settings(FAST, max_examples=100)
    @given(st.binary(max_size=200) | st.builds(_splice, st.just(valid), st.binary(max_size=8)))
    def check(raw: bytes) -> None:
        outcome_of_bytes(parse, raw)

    check()


def _splice(valid: bytes, junk: bytes) -> bytes:
    at = len(junk) * 7 % len(valid)
    return valid[:at] + junk + valid[at:]


@pytest.mark.parametrize("dialect", sorted(PARSERS))
@pytest.mark.parametrize(
    "text",
    [
        # Lone surrogates, escaped and raw; invalid UTF-8; NaN and infinities; duplicates.
        '{{"model": "\\ud800", "messages": [], "input": "x", "max_tokens": 1}}',
        '{{"model": "echo", "max_tokens": 1, "input": "\\udc00\\ud800", '
        '"messages": [{{"role": "user", "content": "\\udfff"}}]}}',
        '{{"model": "echo", "temperature": NaN, "max_tokens": 1, "input": "x", "messages": {m}}}',
        '{{"model": "echo", "temperature": Infinity, "max_tokens": 1, "messages": {m}}}',
        '{{"model": "echo", "max_tokens": -Infinity, "messages": {m}}}',
        '{{"model": "echo", "model": 5, "max_tokens": 1, "input": "x", "messages": {m}}}',
        '{{"model": 5, "model": "echo", "max_tokens": 1, "input": "x", "messages": {m}}}',
        '{{"model": "echo", "max_tokens": 1e400, "seed": 1e400, "messages": {m}}}',
        '{{"model": "echo", "max_tokens": 123456789012345678901234567890, "messages": {m}}}',
    ],
)
def test_nasty_json_text(dialect: str, text: str) -> None:
    parse, _ = PARSERS[dialect]
    m = '[{"role": "user", "content": "hi"}]'
    outcome_of_bytes(parse, text.format(m=m).encode())
    outcome_of_bytes(parse, text.format(m=m).encode().replace(b"hi", b"h\xff\xfei"))


@pytest.mark.parametrize("dialect", sorted(PARSERS))
@pytest.mark.parametrize("depth", [65, 2_000, 200_000])
def test_deep_nesting_is_a_400(dialect: str, depth: int) -> None:
    parse, base = PARSERS[dialect]
    deep = "[" * depth + "]" * depth
    raw = orjson.dumps(base)[:-1] + b',"extra":' + deep.encode() + b"}"
    assert outcome_of_bytes(parse, raw) == "400"
    # Nested inside a known field too, and as Python objects (no JSON parser's own limit).
    nested: object = "x"
    for _ in range(depth):
        nested = {"content": nested}
    body = copy.deepcopy(base) | {"metadata": nested}
    assert outcome(parse, body) == "400"


@pytest.mark.parametrize("dialect", ["chat", "messages", "responses"])
def test_huge_arrays_are_refused(dialect: str) -> None:
    parse, base = PARSERS[dialect]
    limits = DefaultRequestLimits()
    items = "input" if dialect == "responses" else "messages"
    one = base[items][0]
    body = base | {items: [one] * (limits.max_input_items + 1)}
    assert outcome(parse, body) == "400"
    tool = base["tools"][0]
    body = base | {"tools": [tool] * (limits.max_tools + 1)}
    assert outcome(parse, body) == "400"
    body = base | {"instructions": "x" * (limits.max_text_chars + 1)}
    assert outcome(parse, body) == "413"
    body = base | {items: [one] * limits.max_input_items}
    assert outcome(parse, body) in ("ok", "400")  # at the limit: not refused for its length


# The SSE decoder

LINE_ENDS = st.sampled_from([b"\n", b"\r\n", b"\r"])
SSE_LINES = st.one_of(
    st.builds(lambda v: b"data: " + v, st.binary(max_size=20)),
    st.builds(lambda v: b"event: " + v, st.binary(max_size=10)),
    st.builds(lambda v: b":" + v, st.binary(max_size=10)),
    st.just(b""),
    st.binary(max_size=20),  # garbage, including stray CR and LF
)


@st.composite
def sse_stream(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(st.tuples(SSE_LINES, LINE_ENDS), max_size=20))
    raw = b"".join(line + end for line, end in lines)
    cut = draw(st.integers(0, len(raw)))
    return raw[:cut] if draw(st.booleans()) else raw  # a stream that stops anywhere


def split(draw: st.DrawFn, raw: bytes) -> list[bytes]:
    points = sorted(draw(st.lists(st.integers(0, len(raw)), max_size=8)))
    bounds = [0, *points, len(raw)]
    return [raw[a:b] for a, b in itertools.pairwise(bounds)]


def decode_all(chunks: list[bytes], max_line: int = 1 << 30) -> list[ServerSentEvent]:
    decoder = SSEDecoder(max_line)
    events = [e for chunk in chunks for e in decoder.feed(chunk)]
    return events + list(decoder.close())


@FAST
@given(st.data())
def test_sse_decoding_does_not_depend_on_how_bytes_are_split(data: st.DataObject) -> None:
    raw = data.draw(sse_stream())
    whole = decode_all([raw])
    assert decode_all(split(data.draw, raw)) == whole
    assert decode_all([bytes([b]) for b in raw]) == whole
    for event in whole:
        assert isinstance(event.data, str) and isinstance(event.event, str)


@FAST
@given(st.data(), st.integers(1, 32))
def test_sse_oversized_lines_are_a_decode_error_and_nothing_else(
    data: st.DataObject, max_line: int
) -> None:
    raw = data.draw(sse_stream())
    chunks = split(data.draw, raw)
    try:
        events = decode_all(chunks, max_line)
    except SSEDecodeError:
        longest = max(len(line) for line in raw.replace(b"\r", b"\n").split(b"\n"))
        assert longest > max_line  # refused only for a line actually too long
    else:
        assert events == decode_all(chunks)


# Each HTTP backend's stream parser, behind a fake upstream response


class _Content:
    """aiohttp's ``StreamReader`` as the backends read it (aiohttp 3.x,
    ``streams.py``): ``read_nowait`` gives what is buffered (here: the first chunk
    only, so that both ways of reading are taken), ``readany`` waits for the next
    chunk (``b""`` at the end), ``at_eof`` once all is read; ``iter_any`` and
    ``read`` as ``read_body`` uses them."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks
        self._rest = b"".join(chunks)
        self._left = [chunk for chunk in chunks if chunk]  # never b"" before the end
        self._buffered = True  # the first chunk came with the headers

    def read_nowait(self, n: int = -1) -> bytes:
        if self._buffered and self._left:
            self._buffered = False
            first = self._left[0]
            out = first if n < 0 else first[:n]
            if len(out) < len(first):
                self._left[0] = first[len(out) :]
            else:
                self._left.pop(0)
            self._rest = self._rest[len(out) :]
            return out
        return b""

    def at_eof(self) -> bool:
        return not self._left

    async def readany(self) -> bytes:
        await asyncio.sleep(0)
        return self._left.pop(0) if self._left else b""

    async def iter_any(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            await asyncio.sleep(0)
            yield chunk

    async def read(self, n: int = -1) -> bytes:
        size = len(self._rest) if n < 0 else min(n, 7)
        out, self._rest = self._rest[:size], self._rest[size:]
        return out


class _Response:
    status = 200
    content_length = None
    # aiohttp's ClientResponse.connection is None once the connection is released (the
    # whole body read).
    connection = None

    def __init__(self, chunks: list[bytes], content_type: str) -> None:
        self.content = _Content(chunks)
        self.content_type = content_type


OPENAI_EVENTS: list[Any] = [
    {"choices": [{"delta": {"content": "hi"}}]},
    {"choices": [{"delta": {"reasoning_content": "hm"}}]},
    {
        "choices": [
            {
                "delta": {
                    "tool_calls": [
                        {"index": 0, "id": "c", "function": {"name": "f", "arguments": "{"}}
                    ]
                }
            }
        ]
    },
    {"choices": [{"delta": {}, "finish_reason": "tool_calls"}]},
    {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}},
    {"error": {"message": "boom"}},
    "[DONE]",
]
ANTHROPIC_EVENTS: list[Any] = [
    {"type": "message_start", "message": {"usage": {"input_tokens": 3}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}},
    {
        "type": "content_block_start",
        "index": 1,
        "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {}},
    },
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": '{"a"'},
    },
    {
        "type": "content_block_delta",
        "index": 2,
        "delta": {"type": "thinking_delta", "thinking": ""},
    },
    {"type": "content_block_stop", "index": 1},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}},
    {"type": "message_stop"},
    {"type": "ping"},
    {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}},
]
RESPONSES_EVENTS: list[Any] = [
    {"type": "response.created", "response": {"status": "in_progress"}},
    {"type": "response.output_text.delta", "delta": "hi"},
    {"type": "response.reasoning_text.delta", "delta": "hm"},
    {
        "type": "response.output_item.added",
        "output_index": 1,
        "item": {"type": "function_call", "id": "fc", "call_id": "c", "name": "f"},
    },
    {"type": "response.function_call_arguments.delta", "item_id": "fc", "delta": "{"},
    {"type": "response.function_call_arguments.done", "item_id": "fc", "arguments": "{}"},
    {
        "type": "response.output_item.done",
        "output_index": 1,
        "item": {
            "type": "function_call",
            "id": "fc",
            "call_id": "c",
            "name": "f",
            "arguments": "{}",
        },
    },
    {
        "type": "response.completed",
        "response": {"status": "completed", "usage": {"input_tokens": 1, "output_tokens": 2}},
    },
    {"type": "response.failed", "response": {"status": "failed", "error": {"message": "x"}}},
    {"type": "error", "code": "rate_limit_exceeded", "message": "slow down"},
]

BACKENDS: dict[str, tuple[Callable[[], Any], list[Any]]] = {
    "openai_chat": (
        lambda: OpenAIChatBackend("b", OpenAIChatOptions(base_url="http://127.0.0.1:9")),
        OPENAI_EVENTS,
    ),
    "librechat": (
        lambda: LibreChatBackend(
            "b", LibreChatOptions(base_url="http://127.0.0.1:9", api_key_env="X")
        ),
        OPENAI_EVENTS,
    ),
    "anthropic": (
        lambda: AnthropicBackend("b", AnthropicOptions(base_url="http://127.0.0.1:9")),
        ANTHROPIC_EVENTS,
    ),
    "open_responses": (
        lambda: OpenResponsesBackend("b", OpenResponsesOptions(base_url="http://127.0.0.1:9")),
        RESPONSES_EVENTS,
    ),
}
EVENT_TYPES = (
    TextDelta,
    ReasoningDelta,
    ToolCallStarted,
    ToolCallArgumentsDelta,
    Usage,
    Completed,
    Failed,
)


@st.composite
def upstream_stream(draw: st.DrawFn, events: list[Any]) -> bytes:
    parts: list[bytes] = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["event", "event", "event", "mutated", "garbage", "long"]))
        end = draw(LINE_ENDS)
        if kind == "garbage":
            parts.append(draw(st.binary(max_size=30)))
            continue
        if kind == "long":
            parts.append(b"data: " + b"x" * 300 + end)
            continue
        event = draw(st.sampled_from(events))
        if kind == "mutated" and event != "[DONE]":
            event = draw(mutated(event))
        data = event.encode() if isinstance(event, str) else json.dumps(event).encode()
        name = event.get("type") if isinstance(event, dict) else None
        head = b"event: " + name.encode() + end if isinstance(name, str) else b""
        parts.append(head + b"data: " + data + end + end)
    raw = b"".join(parts)
    return raw[: draw(st.integers(0, len(raw)))] if draw(st.booleans()) else raw


async def _run(
    backend: Any, chunks: list[bytes], content_type: str, *, stream: bool = True
) -> list[object]:
    @contextlib.asynccontextmanager
    async def post(path: str, payload: object, headers: object) -> AsyncIterator[_Response]:
        yield _Response(chunks, content_type)

    backend.upstream.post = post
    inv = invocation("hello", stream=stream)
    events: list[object] = []
    try:
        async for batch in backend.invoke(inv, context(inv)):
            assert isinstance(batch, tuple), batch
            for event in batch:
                assert isinstance(event, EVENT_TYPES), event
            events += batch
    except GatewayError as exc:
        assert exc.message
        events.append(exc)
    return events


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_backend_stream_parsers_end_in_events_or_a_gateway_error(name: str) -> None:
    make, events = BACKENDS[name]

    @settings(FAST, max_examples=120)
    @given(st.data())
    def check(data: st.DataObject) -> None:
        backend = make()
        backend.upstream.options = dataclasses.replace(backend.upstream.options, max_line_bytes=256)
        raw = data.draw(upstream_stream(events))
        asyncio.run(_run(backend, split(data.draw, raw), "text/event-stream"))

    check()


@settings(FAST, max_examples=80)
@given(st.data())
def test_open_responses_json_fallback_ends_in_events_or_a_gateway_error(
    data: st.DataObject,
) -> None:
    body = data.draw(
        mutated({"status": "completed", "output": [], "usage": {"input_tokens": 1}})
        | st.binary(max_size=40)
    )
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    backend = OpenResponsesBackend("b", OpenResponsesOptions(base_url="http://127.0.0.1:9"))
    asyncio.run(_run(backend, [raw], "application/json"))


@settings(FAST, max_examples=80)
@given(st.data())
def test_openai_chat_non_streamed_answers_end_in_events_or_a_gateway_error(
    data: st.DataObject,
) -> None:
    completion = {
        "choices": [
            {
                "message": {
                    "content": "hi",
                    "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{}"}}],
                },
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2},
    }
    body = data.draw(mutated(completion) | st.binary(max_size=40))
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    backend = OpenAIChatBackend("b", OpenAIChatOptions(base_url="http://127.0.0.1:9"))
    asyncio.run(_run(backend, [raw], "application/json", stream=False))


def test_open_responses_json_fallback_is_capped() -> None:
    options = OpenResponsesOptions(base_url="http://127.0.0.1:9", max_response_bytes=64)
    backend = OpenResponsesBackend("b", options)
    body = orjson.dumps({"status": "completed", "output": [], "pad": "x" * 100})
    [error] = asyncio.run(_run(backend, [body], "application/json"))
    assert isinstance(error, GatewayError) and error.status == 502
    assert "larger than 64 bytes" in error.message
