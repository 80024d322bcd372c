"""Render canonical events as an Anthropic ``message`` and its event stream.

``MessageBuilder`` is fed the events of one call and keeps the ``message``
object up to date (a ``Folder``, ``gateway.dialects.dialect``); with
``stream=True`` it also returns the SSE frames Anthropic sends (a ``Streamer``),
in its order::

    message_start   (the message with empty content; usage with the input counts)
    ping
    content_block_start / content_block_delta... / content_block_stop   per block, index 0, 1, ...
    message_delta   (stop_reason, stop_sequence; cumulative usage)
    message_stop

or, on a failure after the stream began, one ``error`` event and the end.

A block starts when the kind of content changes (thinking, text, a new tool
call) and stops when the next one starts or the answer ends. An upstream may
interleave the arguments of parallel tool calls; blocks cannot interleave, so
a call started while another is open is held and sent whole after it.

Usage: canonical ``input_tokens`` counts every input token, Anthropic's
``input_tokens`` only those neither read from nor written to the cache, so
``input_tokens = input - cache_read - cache_creation``. ``message_start``
carries the upstream's counts if they came first, else the gateway's estimate
of the input; ``message_delta`` carries the final counts, all four of them
(the SDKs take them as cumulative totals). Finish reasons: stop -> end_turn,
length -> max_tokens, tool_calls -> tool_use, content_filter -> refusal; a stop
at a stop sequence is ``stop_sequence`` when the backend says which one matched
(the anthropic backend does; Chat Completions upstreams do not, so there it is
``end_turn``). Thinking blocks carry an empty ``signature`` (no canonical
event carries one).

Blocks carry exactly the keys Anthropic sends: a key the SDK types mark
optional (``citations``, ``caller``...) is left out, never written as null,
because clients that validate (the Vercel AI SDK) accept a missing key but
reject ``null`` where they expect an array.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway import sse
from gateway.dialects.anthropic_errors import error_object
from gateway.errors import GatewayError
from gateway.events import (
    Batch,
    Completed,
    Event,
    Failed,
    ReasoningDelta,
    TextDelta,
    ToolCallArgumentsDelta,
    ToolCallStarted,
    Usage,
)

Json = dict[str, Any]

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}
PING = sse.event_frame("ping", b'{"type":"ping"}')


def usage_json(usage: Usage) -> Json:
    uncached = usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens
    return {
        "input_tokens": max(0, uncached),
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cached_input_tokens,
    }


class _Block:
    __slots__ = ("call_id", "index", "kind", "name", "parts")

    def __init__(self, kind: str, index: int, call_id: str = "", name: str = "") -> None:
        self.kind = kind  # "text", "thinking" or "tool_use"
        self.index = index
        self.call_id = call_id
        self.name = name
        self.parts: list[str] = []

    def start_json(self) -> Json:
        if self.kind == "text":
            return {"type": "text", "text": ""}
        if self.kind == "thinking":
            return {"type": "thinking", "thinking": "", "signature": ""}
        return {"type": "tool_use", "id": self.call_id, "name": self.name, "input": {}}

    def delta_json(self, piece: str) -> Json:
        if self.kind == "text":
            return {"type": "text_delta", "text": piece}
        if self.kind == "thinking":
            return {"type": "thinking_delta", "thinking": piece}
        return {"type": "input_json_delta", "partial_json": piece}

    def json(self) -> Json:
        text = "".join(self.parts)
        if self.kind == "text":
            return {"type": "text", "text": text}
        if self.kind == "thinking":
            return {"type": "thinking", "thinking": text, "signature": ""}
        return {"type": "tool_use", "id": self.call_id, "name": self.name, "input": _input(text)}


def _input(arguments: str) -> Json:
    """A tool call's arguments as the object Anthropic's ``input`` must be."""
    if not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


class MessageBuilder:
    def __init__(
        self, message_id: str, model: str, input_estimate: int = 0, *, stream: bool = False
    ) -> None:
        self._stream = stream
        self._started = False
        self._blocks: list[_Block] = []
        self._open: _Block | None = None
        self._calls: dict[str, _Block] = {}
        self._pending: list[_Block] = []  # calls held while another call is open
        self.failure: GatewayError | None = None
        self.message: Json = {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage_json(Usage(input_tokens=input_estimate)),
        }

    def head(self) -> bytes:
        return b""  # message_start comes with the first event, so it can carry its usage

    def frames(self, batch: Batch) -> bytes:
        feed = self.feed
        return b"".join([feed(event) for event in batch])

    def fold(self, batch: Batch) -> None:
        feed = self.feed
        for event in batch:
            feed(event)

    def body(self) -> Json:
        if self.failure is not None:
            raise self.failure
        return self.message

    def feed(self, event: Event) -> bytes:
        """Apply one canonical event; return the SSE frames it produces (if streaming)."""
        out: list[bytes] = []
        if isinstance(event, Usage):  # before message_start, so that it carries the counts
            self.message["usage"] = usage_json(event)
        if not self._started:
            self._started = True
            self._frame(out, "message_start", message=dict(self.message))
            if self._stream:
                out.append(PING)
        if isinstance(event, TextDelta):
            self._delta(self._block("text", out), event.text, out)
        elif isinstance(event, ReasoningDelta):
            self._delta(self._block("thinking", out), event.text, out)
        elif isinstance(event, ToolCallStarted):
            if self._open is not None and self._open.kind == "tool_use":
                held = _Block("tool_use", -1, event.call_id, event.name)
                self._pending.append(held)
                self._calls[event.call_id] = held
            else:
                self._close(out)
                self._add("tool_use", out, event.call_id, event.name)
        elif isinstance(event, ToolCallArgumentsDelta):
            call = self._calls.get(event.call_id)
            if call is not None and call is self._open:
                self._delta(call, event.arguments, out)
            elif call is not None and call in self._pending:
                call.parts.append(event.arguments)
        elif isinstance(event, Completed):
            self._close(out)
            reason = STOP_REASONS.get(event.finish_reason, "end_turn")
            if event.stop_sequence is not None and event.finish_reason == "stop":
                reason = "stop_sequence"
            self.message["stop_reason"] = reason
            self.message["stop_sequence"] = event.stop_sequence
            self._frame(
                out,
                "message_delta",
                delta={"stop_reason": reason, "stop_sequence": event.stop_sequence},
                usage=self.message["usage"],
            )
            self._frame(out, "message_stop")
        elif isinstance(event, Failed):
            self.failure = event.error
            self._frame(out, "error", error=error_object(event.error))
        return b"".join(out) if self._stream else b""

    def _block(self, kind: str, out: list[bytes]) -> _Block:
        if self._open is not None and self._open.kind == kind:
            return self._open
        self._close(out)
        return self._add(kind, out)

    def _add(self, kind: str, out: list[bytes], call_id: str = "", name: str = "") -> _Block:
        block = _Block(kind, len(self._blocks), call_id, name)
        self._blocks.append(block)
        if call_id:
            self._calls[call_id] = block
        self._open = block
        self._frame(out, "content_block_start", index=block.index, content_block=block.start_json())
        return block

    def _delta(self, block: _Block, piece: str, out: list[bytes]) -> None:
        block.parts.append(piece)
        self._frame(out, "content_block_delta", index=block.index, delta=block.delta_json(piece))

    def _close(self, out: list[bytes]) -> None:
        """Stop the open block, then send every held call whole."""
        block, self._open = self._open, None
        if block is not None:
            self._stop(block, out)
        held, self._pending = self._pending, []
        for call in held:
            block = self._add("tool_use", out, call.call_id, call.name)
            if call.parts:
                self._delta(block, "".join(call.parts), out)
            self._open = None
            self._stop(block, out)

    def _stop(self, block: _Block, out: list[bytes]) -> None:
        self.message["content"].append(block.json())
        self._frame(out, "content_block_stop", index=block.index)

    def _frame(self, out: list[bytes], kind: str, **fields: Any) -> None:
        if self._stream:
            out.append(sse.event_frame(kind, orjson.dumps({"type": kind, **fields})))
