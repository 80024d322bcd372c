"""A fake OpenAI-compatible Chat Completions server on loopback.

It speaks the real streaming wire format (``data: {chunk}\\n\\n`` frames: a
first chunk with the role, content deltas, tool-call deltas, a chunk with the
finish reason, a usage chunk with ``choices: []`` when
``stream_options.include_usage`` is set, then ``data: [DONE]``) and answers
non-streaming requests with one ``chat.completion`` object (streaming ones too,
with ``json_answer``, as LiteLLM and LibreChat agents without streaming do).
With ``logprobs: true`` in the request, each content piece comes with the
logprobs of one token (itself) and ``top_logprobs`` alternatives.

Each test scripts it: set ``upstream.script`` (every request) or
``upstream.enqueue(...)`` (the next requests, in order). It records every
request it receives (path, headers, JSON body) and notices when a client goes
away before the answer is complete (``upstream.disconnected``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.base import (
    DONE,
    Disconnect,
    FakeUpstream,
    Faults,
    Frame,
    Received,
    fail_after,
    json_response,
    sse,
)

__all__ = ["Disconnect", "FakeOpenAIUpstream", "Received", "Script", "ToolCallScript"]


@dataclass(frozen=True)
class ToolCallScript:
    name: str
    arguments: tuple[str, ...]  # streamed in these pieces
    call_id: str = "call_fake_1"


@dataclass(frozen=True)
class Script(Faults):
    """What the fake does with one request (and the ``Faults`` every fake takes)."""

    # vLLM's reasoning parsers (and DeepSeek's API) stream ``delta.reasoning_content``
    # before the content, and answer ``message.reasoning_content``.
    reasoning: tuple[str, ...] = ()
    content: tuple[str, ...] = ("Hello", " from", " upstream")
    tool_calls: tuple[ToolCallScript, ...] = ()
    finish_reason: str | None = None  # default: tool_calls if any, else stop
    # Reported usage, sent as given (any JSON value, to test a gateway against bad ones);
    # None sends no usage chunk even when asked for one.
    usage: Any = field(
        default_factory=lambda: {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
    )
    error_after: int | None = None  # send an ``{"error": ...}`` chunk after this many
    error_message: str = "fake upstream overloaded"  # that chunk's message
    send_finish: bool = True  # send the chunk with the finish reason
    send_done: bool = True  # end with data: [DONE]
    set_cookie: str | None = None  # a Set-Cookie header on the answer


class FakeOpenAIUpstream(FakeUpstream[Script]):
    def __init__(self) -> None:
        super().__init__(Script())
        # If set, picks the script for each request body (None: the usual one).
        self.choose: Callable[[dict[str, Any]], Script | None] | None = None

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._chat)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await self.record(request)
        chosen = self.choose(body) if self.choose is not None else None
        script = chosen or self.next_script()
        cookie = {"Set-Cookie": script.set_cookie} if script.set_cookie else {}
        return await self.answer(
            request,
            script,
            stream=bool(body.get("stream")),
            whole=lambda: json_response(_completion(script, body), cookie),
            frames=lambda: _frames(script, body),
            headers=cookie,
        )


def _finish(script: Script) -> str:
    if script.finish_reason is not None:
        return script.finish_reason
    return "tool_calls" if script.tool_calls else "stop"


def _frames(script: Script, body: dict[str, Any]) -> list[Frame]:
    """The frames in wire order; kind ``content`` for a delta chunk."""
    head = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": body.get("model", ""),
        "system_fingerprint": "fp_fake",
    }
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    def chunk(delta: dict[str, Any], finish: str | None = None, logprobs: Any = None) -> bytes:
        c: dict[str, Any] = {
            **head,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
            ],
        }
        if include_usage:
            c["usage"] = None
        return sse(c)

    frames: list[Frame] = [("role", [chunk({"role": "assistant", "content": ""})])]
    for piece in script.reasoning:
        frames.append(("content", [chunk({"reasoning_content": piece})]))
    for i, text in enumerate(script.content):
        logprobs = {"content": [_logprob(text, i, body)], "refusal": None}
        frames.append(
            (
                "content",
                [chunk({"content": text}, logprobs=logprobs if body.get("logprobs") else None)],
            )
        )
    for index, call in enumerate(script.tool_calls):
        first = {
            "index": index,
            "id": call.call_id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        frames.append(("content", [chunk({"tool_calls": [first]})]))
        for piece in call.arguments:
            delta = {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
            frames.append(("content", [chunk(delta)]))
    if script.send_finish:
        frames.append(("finish", [chunk({}, _finish(script))]))
    if include_usage and script.usage is not None:
        frames.append(("usage", [sse({**head, "choices": [], "usage": script.usage})]))
    if script.send_done:
        frames.append(("done", [DONE]))
    # A failure mid-stream: an error chunk where the next content would be, then [DONE].
    error = {"error": {"message": script.error_message, "type": "server_error"}}
    return fail_after(frames, script.error_after, [("error", [sse(error)]), ("done", [DONE])])


def _logprob(text: str, i: int, body: dict[str, Any]) -> dict[str, Any]:
    """The logprobs of content piece ``i`` as one token, and its alternatives."""
    top = [
        {"token": f"alt{j}", "logprob": -1.0 - j, "bytes": list(f"alt{j}".encode())}
        for j in range(body.get("top_logprobs") or 0)
    ]
    return {
        "token": text,
        "logprob": -0.25 * i,
        "bytes": list(text.encode()),
        "top_logprobs": top,
    }


def _completion(script: Script, body: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(script.content) or None,
        "refusal": None,
    }
    if script.reasoning:
        message["reasoning_content"] = "".join(script.reasoning)
    if script.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.call_id,
                "type": "function",
                "function": {"name": call.name, "arguments": "".join(call.arguments)},
            }
            for call in script.tool_calls
        ]
    logprobs = None
    if body.get("logprobs"):
        tokens = [_logprob(text, i, body) for i, text in enumerate(script.content)]
        logprobs = {"content": tokens, "refusal": None}
    out: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1700000000,
        "model": body.get("model", ""),
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": logprobs,
                "finish_reason": _finish(script),
            }
        ],
    }
    if script.usage is not None:
        out["usage"] = script.usage
    return out
