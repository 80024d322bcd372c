"""Canonical events -> Anthropic's message object and stream, checked with the SDK's own types."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from anthropic.types import Message, RawMessageStreamEvent
from anthropic.types.shared import ErrorResponse
from pydantic import TypeAdapter

from gateway.dialects.messages_render import MessageBuilder, usage_json
from gateway.errors import RateLimited, UpstreamError
from gateway.events import (
    Completed,
    Event,
    Failed,
    ReasoningDelta,
    TextDelta,
    ToolCallArgumentsDelta,
    ToolCallStarted,
    Usage,
)
from gateway.sse import SSEDecoder

STREAM_EVENT: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)
MESSAGE: TypeAdapter[Message] = TypeAdapter(Message)


def render(
    events: Sequence[Event], estimate: int = 7
) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
    """The non-streaming message, and the streamed ``(event name, data)`` pairs."""
    plain = MessageBuilder("msg_1", "claude", estimate)
    for event in events:
        assert plain.feed(event) == b""
    streamed = MessageBuilder("msg_1", "claude", estimate, stream=True)
    raw = b"".join(streamed.feed(event) for event in events)
    decoder = SSEDecoder()
    frames = [(e.event, orjson.loads(e.data)) for e in decoder.feed(raw)]
    for name, data in frames:
        assert data["type"] == name
        if name not in ("ping", "error"):
            STREAM_EVENT.validate_python(data)
    return plain.message, frames


def accumulate(frames: list[tuple[str, Any]]) -> Message:
    """The SDK's own accumulation of the stream (what ``get_final_message`` returns)."""
    from anthropic.lib.streaming._messages import accumulate_event

    snapshot = None
    bufs: dict[int, bytes] = {}
    for name, data in frames:
        if name in ("ping", "error"):
            continue
        snapshot = accumulate_event(
            event=STREAM_EVENT.validate_python(data), current_snapshot=snapshot, json_bufs=bufs
        )
    assert snapshot is not None
    return snapshot


def test_text_answer() -> None:
    usage = Usage(input_tokens=20, output_tokens=3)
    message, frames = render([TextDelta("Hel"), TextDelta("lo"), usage, Completed()])
    parsed = MESSAGE.validate_python(message)
    assert parsed.id == "msg_1" and parsed.model == "claude" and parsed.role == "assistant"
    assert [b.model_dump(exclude_none=True) for b in parsed.content] == [
        {"type": "text", "text": "Hello"}
    ]
    assert parsed.stop_reason == "end_turn" and parsed.stop_sequence is None
    assert parsed.usage.input_tokens == 20 and parsed.usage.output_tokens == 3

    assert [name for name, _ in frames] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = frames[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert start["usage"]["input_tokens"] == 7  # the estimate: usage came later
    assert frames[3][1] == {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": "Hel"},
    }
    assert frames[6][1]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert frames[6][1]["usage"]["output_tokens"] == 3
    final = accumulate(frames)
    assert final.content[0].type == "text" and final.content[0].text == "Hello"
    assert final.usage.input_tokens == 20  # the message_delta's cumulative count wins


def test_usage_first_goes_in_message_start() -> None:
    _, frames = render([Usage(input_tokens=30), TextDelta("x"), Completed()])
    assert frames[0][1]["message"]["usage"]["input_tokens"] == 30


def test_usage_excludes_cached_input() -> None:
    usage = Usage(input_tokens=100, output_tokens=5, cached_input_tokens=60, cache_write_tokens=30)
    assert usage_json(usage) == {
        "input_tokens": 10,
        "output_tokens": 5,
        "cache_creation_input_tokens": 30,
        "cache_read_input_tokens": 60,
    }


def test_thinking_text_and_tools_in_order() -> None:
    events: list[Event] = [
        ReasoningDelta("let me "),
        ReasoningDelta("think"),
        TextDelta("Checking."),
        ToolCallStarted("toolu_1", "weather"),
        ToolCallArgumentsDelta("toolu_1", '{"city":'),
        ToolCallArgumentsDelta("toolu_1", '"Paris"}'),
        Usage(input_tokens=50, output_tokens=20, reasoning_tokens=4),
        Completed("tool_calls"),
    ]
    message, frames = render(events)
    parsed = MESSAGE.validate_python(message)
    kinds = [b.type for b in parsed.content]
    assert kinds == ["thinking", "text", "tool_use"]
    assert message["content"][0] == {
        "type": "thinking",
        "thinking": "let me think",
        "signature": "",
    }
    assert message["content"][2] == {
        "type": "tool_use",
        "id": "toolu_1",
        "name": "weather",
        "input": {"city": "Paris"},
    }
    assert parsed.stop_reason == "tool_use"
    starts = [d for n, d in frames if n == "content_block_start"]
    assert [s["index"] for s in starts] == [0, 1, 2]
    assert starts[2]["content_block"] == {
        "type": "tool_use",
        "id": "toolu_1",
        "name": "weather",
        "input": {},
    }
    deltas = [d["delta"]["type"] for n, d in frames if n == "content_block_delta"]
    assert deltas == [
        "thinking_delta",
        "thinking_delta",
        "text_delta",
        "input_json_delta",
        "input_json_delta",
    ]
    stops = [d["index"] for n, d in frames if n == "content_block_stop"]
    assert stops == [0, 1, 2]
    final = accumulate(frames)
    assert final.content[2].type == "tool_use" and final.content[2].input == {"city": "Paris"}


def test_interleaved_parallel_calls_become_whole_blocks() -> None:
    events: list[Event] = [
        ToolCallStarted("a", "one"),
        ToolCallStarted("b", "two"),
        ToolCallArgumentsDelta("a", '{"x":'),
        ToolCallArgumentsDelta("b", '{"y":2}'),
        ToolCallArgumentsDelta("a", "1}"),
        Completed("tool_calls"),
    ]
    message, frames = render(events)
    assert [(b["id"], b["input"]) for b in message["content"]] == [("a", {"x": 1}), ("b", {"y": 2})]
    order = [(n, d["index"]) for n, d in frames if n.startswith("content_block_s")]
    assert order == [
        ("content_block_start", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_stop", 1),
    ]
    final = accumulate(frames)
    assert [b.input for b in final.content if b.type == "tool_use"] == [{"x": 1}, {"y": 2}]


def test_stop_reasons() -> None:
    for finish, reason in [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
    ]:
        message, _ = render([TextDelta("x"), Completed(finish)])  # type: ignore[arg-type]
        assert MESSAGE.validate_python(message).stop_reason == reason


def test_failure_mid_stream_is_an_error_event() -> None:
    events: list[Event] = [TextDelta("partial"), Failed(UpstreamError("upstream broke"))]
    _, frames = render(events)
    assert frames[-1][0] == "error"
    body = ErrorResponse.model_validate(frames[-1][1])
    assert body.error.type == "api_error" and body.error.message == "upstream broke"
    assert "message_stop" not in [n for n, _ in frames]

    builder = MessageBuilder("msg_1", "claude")
    for event in events:
        builder.feed(event)
    assert isinstance(builder.failure, UpstreamError)


def test_rate_limit_mid_stream() -> None:
    _, frames = render([TextDelta("x"), Failed(RateLimited("slow down"))])
    assert frames[-1][1] == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "slow down"},
    }


def _nulls(value: Any, path: str = "") -> list[str]:
    """Paths of every ``null`` inside a JSON value."""
    if value is None:
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _nulls(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _nulls(v, f"{path}[{i}]")]
    return []


def test_blocks_carry_exactly_anthropics_keys_and_no_null() -> None:
    # Anthropic omits ``citations`` on a plain text block; the Vercel AI SDK's
    # Anthropic provider rejects ``"citations": null`` (expected array).
    events: list[Event] = [
        ReasoningDelta("hmm"),
        TextDelta("Hi"),
        ToolCallStarted("toolu_1", "f"),
        ToolCallArgumentsDelta("toolu_1", "{}"),
        Completed("tool_calls"),
    ]
    message, frames = render(events)
    assert message["content"] == [
        {"type": "thinking", "thinking": "hmm", "signature": ""},
        {"type": "text", "text": "Hi"},
        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
    ]
    assert _nulls(message["content"]) == []
    starts = [d["content_block"] for n, d in frames if n == "content_block_start"]
    assert starts == [
        {"type": "thinking", "thinking": "", "signature": ""},
        {"type": "text", "text": ""},
        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
    ]
    allowed: dict[str, list[str]] = {"message_delta": [".delta.stop_sequence"]}
    for name, data in frames:
        if name != "message_start":  # its stop_reason/stop_sequence are null by design
            assert _nulls(data) == allowed.get(name, [])
