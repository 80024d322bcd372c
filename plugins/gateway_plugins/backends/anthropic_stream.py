"""The Anthropic Messages wire format, upstream side: the answer.

``EventParser`` turns the upstream's server-sent events into canonical events;
``message_as_events`` replays a whole (non-streamed) message as the events its
stream would have been, so both answers take one path. No HTTP here, so both are
tested frame by frame.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from gateway.plugin import (
    Completed,
    Event,
    Failed,
    FinishReason,
    ReasoningDelta,
    TextDelta,
    ToolCallArgumentsDelta,
    ToolCallStarted,
    UpstreamError,
    Usage,
    text_delta,
)

_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

INCOMPLETE = "The upstream stream ended before the answer was complete."


def usage_from(raw: Mapping[str, Any]) -> Usage:
    """Canonical usage of an Anthropic ``usage`` object (input counts every token read)."""
    fresh = _int(raw.get("input_tokens"))
    written = _int(raw.get("cache_creation_input_tokens"))
    read = _int(raw.get("cache_read_input_tokens"))
    return Usage(
        input_tokens=fresh + written + read,
        output_tokens=_int(raw.get("output_tokens")),
        cached_input_tokens=read,
        cache_write_tokens=written,
    )


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


class _ToolBlock:
    __slots__ = ("call_id", "initial", "streamed")

    def __init__(self, call_id: str, initial: object) -> None:
        self.call_id = call_id
        self.initial = initial
        self.streamed = False


def message_as_events(message: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A whole (non-streamed) ``message`` as the stream that would have carried it.

    Each block is one ``content_block_start`` holding all of it (the parser
    reads a start's text, thinking and tool input) and its stop; an ``error``
    object stays itself, which the parser raises.
    """
    if message.get("type") == "error":
        return [message]
    blocks = message.get("content")
    if message.get("type") != "message" or not isinstance(blocks, list):
        raise UpstreamError("The upstream sent a malformed message.")
    events: list[Mapping[str, Any]] = [
        {"type": "message_start", "message": {**message, "content": []}}
    ]
    for index, block in enumerate(blocks):
        events.append({"type": "content_block_start", "index": index, "content_block": block})
        events.append({"type": "content_block_stop", "index": index})
    delta = {k: message.get(k) for k in ("stop_reason", "stop_sequence")}
    events.append({"type": "message_delta", "delta": delta, "usage": {}})
    events.append({"type": "message_stop"})
    return events


class EventParser:
    """Feed the upstream's events in order; ``finish`` closes the stream.

    ``feed`` yields ``Usage`` then ``Completed`` at ``message_stop`` and sets
    ``done``; the caller stops reading then. An ``error`` event raises
    ``UpstreamError``. ``ping``, unknown events and unknown block types
    (redacted thinking, server tools) are ignored.
    """

    def __init__(self) -> None:
        self.done = False
        self._usage: dict[str, Any] = {}
        self._finish: FinishReason = "stop"
        self._stop_sequence: str | None = None
        self._tools: dict[int, _ToolBlock] = {}  # content block index -> its tool call
        self._tool_count = 0

    def feed(self, data: Mapping[str, Any]) -> Iterator[Event]:
        kind = data.get("type")
        if kind == "content_block_delta":
            yield from self._delta(data)
        elif kind == "content_block_start":
            yield from self._start(data)
        elif kind == "content_block_stop":
            yield from self._stop(data)
        elif kind == "message_start":
            message = data.get("message")
            usage = message.get("usage") if isinstance(message, dict) else None
            if isinstance(usage, dict):
                self._usage.update(usage)
        elif kind == "message_delta":
            delta = data.get("delta")
            reason = delta.get("stop_reason") if isinstance(delta, dict) else None
            if isinstance(reason, str) and reason:
                self._finish = _FINISH.get(reason, "stop")
            matched = delta.get("stop_sequence") if isinstance(delta, dict) else None
            if isinstance(matched, str):
                self._stop_sequence = matched
            usage = data.get("usage")
            if isinstance(usage, dict):  # cumulative: later counts replace earlier ones
                self._usage.update({k: v for k, v in usage.items() if v is not None})
        elif kind == "message_stop":
            self.done = True
            yield usage_from(self._usage)
            yield Completed(self._finish, self._stop_sequence)
        elif kind == "error":
            error = data.get("error")
            if isinstance(error, dict):
                message = f"{error.get('type', 'error')}: {error.get('message', '')}"
            else:
                message = str(error)
            raise UpstreamError(f"The upstream failed mid-stream: {message}")

    def feed_all(self, events: list[Mapping[str, Any]]) -> Iterator[Event]:
        for data in events:
            yield from self.feed(data)

    def _index(self, data: Mapping[str, Any]) -> int:
        index = data.get("index")
        if not isinstance(index, int):
            raise UpstreamError("The upstream sent a content block event without an index.")
        return index

    def _start(self, data: Mapping[str, Any]) -> Iterator[Event]:
        index = self._index(data)
        block = data.get("content_block")
        if not isinstance(block, dict):
            raise UpstreamError("The upstream sent a malformed content block.")
        kind = block.get("type")
        if kind == "text":
            if isinstance(block.get("text"), str) and block["text"]:
                yield TextDelta(block["text"])
        elif kind == "thinking":
            if isinstance(block.get("thinking"), str) and block["thinking"]:
                yield ReasoningDelta(block["thinking"])
        elif kind == "tool_use":
            call_id = block.get("id")
            if not isinstance(call_id, str) or not call_id:
                call_id = f"toolu_gateway_{self._tool_count}"
            self._tool_count += 1
            name = block.get("name")
            self._tools[index] = _ToolBlock(call_id, block.get("input"))
            yield ToolCallStarted(call_id, name if isinstance(name, str) else "")

    def _delta(self, data: Mapping[str, Any]) -> Iterator[Event]:
        delta = data.get("delta")
        if not isinstance(delta, dict):
            raise UpstreamError("The upstream sent a malformed content block delta.")
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            if isinstance(text, str) and text:
                yield text_delta(text)
        elif kind == "thinking_delta":
            text = delta.get("thinking")
            if isinstance(text, str) and text:
                yield ReasoningDelta(text)
        elif kind == "input_json_delta":
            tool = self._tools.get(self._index(data))
            if tool is None:
                raise UpstreamError("The upstream sent tool input outside a tool_use block.")
            partial = delta.get("partial_json")
            if isinstance(partial, str) and partial:
                tool.streamed = True
                yield ToolCallArgumentsDelta(tool.call_id, partial)
        # signature_delta, citations_delta...: nothing canonical to say

    def _stop(self, data: Mapping[str, Any]) -> Iterator[Event]:
        tool = self._tools.pop(self._index(data), None)
        if tool is not None and not tool.streamed:
            initial = tool.initial if isinstance(tool.initial, dict) else {}
            yield ToolCallArgumentsDelta(tool.call_id, orjson.dumps(initial).decode())

    def finish(self) -> Iterator[Event]:
        """After the upstream's last event: ``Failed`` unless ``message_stop`` came."""
        if not self.done:
            yield Failed(UpstreamError(INCOMPLETE))
