"""A fake Anthropic Messages API server on loopback.

It speaks the wire format documented at docs.anthropic.com (Messages,
"Streaming Messages", "Errors"): ``POST /v1/messages`` with ``x-api-key`` and
``anthropic-version`` headers; a streamed answer is a series of named SSE
events (``event: <type>`` then ``data: {"type": "<type>", ...}``)::

    message_start        {"message": {..., "usage": {"input_tokens", "cache_creation_input_tokens",
                                                     "cache_read_input_tokens", "output_tokens"}}}
    ping
    content_block_start  {"index": i, "content_block": {"type": "text", "text": ""}}
                          (or thinking {"thinking": "", "signature": ""},
                           or tool_use {"id": "toolu_...", "name": ..., "input": {}})
    content_block_delta  {"index": i, "delta": {"type": "text_delta", "text": ...}}
                          (thinking_delta, signature_delta, input_json_delta {"partial_json"})
    content_block_stop   {"index": i}
    message_delta        {"delta": {"stop_reason", "stop_sequence"}, "usage": {"output_tokens"}}
    message_stop

An overloaded stream sends ``event: error`` with
``{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}``;
an HTTP error is ``{"type": "error", "error": {"type", "message"}, "request_id"}``
with the status Anthropic uses for that type (400, 401, 403, 404, 413, 429,
500, 529). A request without ``x-api-key``, ``anthropic-version``,
``max_tokens`` or ``messages`` is refused as Anthropic would refuse it.
Non-streaming requests get one ``message`` object.

Each test scripts it: ``upstream.script`` (every request) or
``upstream.enqueue(...)`` (the next requests, in order). It records every
request (path, headers, JSON body) and notices a client that goes away before
the answer is complete (``upstream.disconnected``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.base import (
    Disconnect,
    FakeUpstream,
    Faults,
    Frame,
    Received,
    fail_after,
    json_response,
    sse,
)

__all__ = ["Disconnect", "FakeAnthropicUpstream", "Received", "Script"]

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"


@dataclass(frozen=True)
class Block:
    """One content block of the answer, streamed in ``pieces``."""

    type: str  # text | thinking | tool_use | redacted_thinking
    pieces: tuple[str, ...] = ()  # text, thinking, or partial_json pieces
    id: str = ""
    name: str = ""
    input: dict[str, Any] | None = None  # tool_use: ``input`` at content_block_start


def text(*pieces: str) -> Block:
    return Block("text", pieces)


def thinking(*pieces: str) -> Block:
    return Block("thinking", pieces)


def tool_use(
    name: str,
    *pieces: str,
    call_id: str = "toolu_01A09q90qw90lq917835lq9",
    whole: dict[str, Any] | None = None,
) -> Block:
    """A tool_use block; ``pieces`` stream its input, or ``whole`` gives it at the start."""
    return Block("tool_use", pieces, id=call_id, name=name, input=whole)


@dataclass(frozen=True)
class Script(Faults):
    """What the fake does with one request (and the ``Faults`` every fake takes)."""

    blocks: tuple[Block, ...] = (text("Hello", " from", " Claude"),)
    stop_reason: str | None = None  # default: tool_use if any tool_use block, else end_turn
    stop_sequence: str | None = None
    # message_start usage (sent as given: any JSON value); output_tokens there is
    # Anthropic's early count.
    usage: Any = field(
        default_factory=lambda: {
            "input_tokens": 25,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 1,
        }
    )
    output_tokens: Any = 15  # the cumulative count in the final message_delta
    # The message_delta's whole usage instead of {"output_tokens": output_tokens}: Anthropic's
    # also repeats the input and cache counts there, cumulative (they replace the early ones).
    delta_usage: Any = None
    # status >= 400: an Anthropic error body; the content frames the faults count are deltas
    error_after: int | None = None  # send ``event: error`` after this many deltas
    error_type: str = "overloaded_error"
    error_message: str = "Overloaded"
    ping: bool = True  # Anthropic sends a ping after message_start
    send_message_stop: bool = True  # False: end the HTTP body cleanly without message_stop
    # json_answer: answer one message even to stream: true (LiteLLM may)


class FakeAnthropicUpstream(FakeUpstream[Script]):
    """``url`` is the backend's base_url (no /v1)."""

    def __init__(self) -> None:
        super().__init__(Script())

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self._messages)

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await self.record(request)
        script = self.next_script()
        return await self.answer(
            request,
            script,
            stream=bool(body.get("stream")),
            whole=lambda: json_response(_message(script, body)),
            frames=lambda: _frames(script, body),
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "request-id": "req_fake_stream",
            },
            refusal=_refuse(request, body),
        )

    def error_response(self, script: Script) -> web.Response:
        return error_response(script.status, script.error_body)


def error_body(status: int, message: str | None = None) -> bytes:
    kind = ERROR_TYPES.get(status, "api_error")
    return orjson.dumps(
        {
            "type": "error",
            "error": {"type": kind, "message": message or f"fake anthropic {kind}"},
            "request_id": "req_fake_error",
        }
    )


def error_response(status: int, body: bytes | None = None) -> web.Response:
    headers = {"request-id": "req_fake_error"}
    if status == 429:
        headers["retry-after"] = "1"
    return web.Response(
        status=status,
        body=body or error_body(status),
        content_type="application/json",
        headers=headers,
    )


def _refuse(request: web.Request, body: dict[str, Any]) -> web.Response | None:
    """What Anthropic answers a request it would never serve."""
    if not request.headers.get("x-api-key"):
        return error_response(401, error_body(401, "x-api-key header is required"))
    if not request.headers.get("anthropic-version"):
        return error_response(400, error_body(400, "anthropic-version: header is required"))
    if not isinstance(body.get("model"), str):
        return error_response(400, error_body(400, "model: Field required"))
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or max_tokens < 1:
        return error_response(400, error_body(400, "max_tokens: Field required"))
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return error_response(400, error_body(400, "messages: at least one message is required"))
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or budget < 1024 or budget >= max_tokens:
            return error_response(
                400,
                error_body(400, "`max_tokens` must be greater than `thinking.budget_tokens`"),
            )
    return None


def _event(name: str, data: dict[str, Any]) -> list[bytes]:
    return [sse(data, name)]


def _stop_reason(script: Script) -> str:
    if script.stop_reason is not None:
        return script.stop_reason
    return "tool_use" if any(b.type == "tool_use" for b in script.blocks) else "end_turn"


def _head(script: Script, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", ""),
    }


def _start_block(block: Block) -> dict[str, Any]:
    if block.type == "text":
        return {"type": "text", "text": ""}
    if block.type == "thinking":
        return {"type": "thinking", "thinking": "", "signature": ""}
    if block.type == "tool_use":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input or {}}
    return {"type": block.type, "data": "EmwKAhgBEgy3va3pzix/LafPsn4a"}


def _delta(block: Block, piece: str) -> dict[str, Any]:
    if block.type == "text":
        return {"type": "text_delta", "text": piece}
    if block.type == "thinking":
        return {"type": "thinking_delta", "thinking": piece}
    return {"type": "input_json_delta", "partial_json": piece}


def _frames(script: Script, body: dict[str, Any]) -> list[Frame]:
    """The frames in wire order; kind ``content`` for a content_block_delta."""
    frames: list[Frame] = []
    message = {
        **_head(script, body),
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": script.usage,
    }
    frames.append(("meta", _event("message_start", {"type": "message_start", "message": message})))
    if script.ping:
        frames.append(("meta", _event("ping", {"type": "ping"})))
    for index, block in enumerate(script.blocks):
        start = {
            "type": "content_block_start",
            "index": index,
            "content_block": _start_block(block),
        }
        frames.append(("meta", _event("content_block_start", start)))
        if block.type == "tool_use" and block.input is None and not block.pieces:
            pieces: tuple[str, ...] = ("",)  # Anthropic streams one empty partial_json
        else:
            pieces = block.pieces
        for piece in pieces:
            delta = {"type": "content_block_delta", "index": index, "delta": _delta(block, piece)}
            frames.append(("content", _event("content_block_delta", delta)))
        if block.type == "thinking":
            signature = {"type": "signature_delta", "signature": SIGNATURE}
            delta = {"type": "content_block_delta", "index": index, "delta": signature}
            frames.append(("meta", _event("content_block_delta", delta)))
        stop = {"type": "content_block_stop", "index": index}
        frames.append(("meta", _event("content_block_stop", stop)))
    message_delta = {
        "type": "message_delta",
        "delta": {"stop_reason": _stop_reason(script), "stop_sequence": script.stop_sequence},
        "usage": _late_usage(script),
    }
    frames.append(("meta", _event("message_delta", message_delta)))
    if script.send_message_stop:
        frames.append(("meta", _event("message_stop", {"type": "message_stop"})))
    # Overloaded mid-stream: an error event where the next delta would be, then the end.
    error = {"type": "error", "error": {"type": script.error_type, "message": script.error_message}}
    return fail_after(frames, script.error_after, [("error", _event("error", error))])


def _message(script: Script, body: dict[str, Any]) -> dict[str, Any]:
    """The non-streaming answer: one ``message`` object."""
    content: list[dict[str, Any]] = []
    for block in script.blocks:
        joined = "".join(block.pieces)
        if block.type == "text":
            content.append({"type": "text", "text": joined})
        elif block.type == "thinking":
            content.append({"type": "thinking", "thinking": joined, "signature": SIGNATURE})
        elif block.type == "tool_use":
            tool_input = block.input if block.input is not None else orjson.loads(joined or "{}")
            content.append(
                {"type": "tool_use", "id": block.id, "name": block.name, "input": tool_input}
            )
    return {
        **_head(script, body),
        "content": content,
        "stop_reason": _stop_reason(script),
        "stop_sequence": script.stop_sequence,
        "usage": _final_usage(script),
    }


def _late_usage(script: Script) -> Any:
    """The message_delta's usage."""
    if script.delta_usage is not None:
        return script.delta_usage
    return {"output_tokens": script.output_tokens}


def _final_usage(script: Script) -> Any:
    """A non-streamed message's usage: the early counts updated by the late ones."""
    late = _late_usage(script)
    if isinstance(script.usage, dict) and isinstance(late, dict):
        return {**script.usage, **late}
    return late if isinstance(late, dict) else script.usage
