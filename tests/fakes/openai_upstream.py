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

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

from tests.fakes.loopback import dumps, serve


@dataclass(frozen=True)
class ToolCallScript:
    name: str
    arguments: tuple[str, ...]  # streamed in these pieces
    call_id: str = "call_fake_1"


@dataclass(frozen=True)
class Script:
    """What the fake does with one request."""

    content: tuple[str, ...] = ("Hello", " from", " upstream")
    tool_calls: tuple[ToolCallScript, ...] = ()
    finish_reason: str | None = None  # default: tool_calls if any, else stop
    # Reported usage, sent as given (any JSON value, to test a gateway against bad ones);
    # None sends no usage chunk even when asked for one.
    usage: Any = field(
        default_factory=lambda: {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
    )
    status: int = 200  # >= 400: answer with this status and ``error_body``
    error_body: bytes | None = None  # default: an OpenAI-shaped error
    first_byte_delay: float = 0.0  # seconds before the response starts
    chunk_delay: float = 0.0  # seconds between chunks
    hang: bool = False  # never answer (until the client goes away)
    cut_after: int | None = None  # drop the connection after this many content chunks
    stall_after: int | None = None  # go silent (connection open) after this many
    error_after: int | None = None  # send an ``{"error": ...}`` chunk after this many
    error_message: str = "fake upstream overloaded"  # that chunk's message
    keepalive: bool = False  # an SSE comment line before every frame
    crlf: bool = False  # CRLF line endings
    write_size: int | None = None  # split every frame into writes of this many bytes
    one_write: bool = False  # the whole stream in one write: the gateway reads it at once
    send_finish: bool = True  # send the chunk with the finish reason
    send_done: bool = True  # end with data: [DONE]
    set_cookie: str | None = None  # a Set-Cookie header on the answer
    json_answer: bool = False  # answer one chat.completion even to a streaming request


@dataclass(frozen=True)
class Received:
    path: str
    headers: CIMultiDict[str]  # case-insensitive, as HTTP headers are
    body: dict[str, Any]
    at: float


@dataclass
class Disconnect:
    path: str
    at: float  # time.monotonic() when the fake noticed
    chunks_sent: int


class FakeOpenAIUpstream:
    def __init__(self) -> None:
        self.script = Script()
        # If set, picks the script for each request body (None: the usual one).
        self.choose: Callable[[dict[str, Any]], Script | None] | None = None
        self._queue: deque[Script] = deque()
        self.requests: list[Received] = []
        self.disconnects: list[Disconnect] = []
        self.disconnected = asyncio.Event()
        self.completed = 0
        self._runner: web.AppRunner | None = None
        self.url = ""  # http://127.0.0.1:PORT

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def enqueue(self, *scripts: Script) -> None:
        self._queue.extend(scripts)

    @property
    def last(self) -> Received:
        assert self.requests, "the fake upstream received no request"
        return self.requests[-1]

    async def start(self) -> FakeOpenAIUpstream:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner, self.url = await serve(app)
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_disconnect(self, timeout: float) -> Disconnect:  # noqa: ASYNC109
        await asyncio.wait_for(self.disconnected.wait(), timeout)
        return self.disconnects[-1]

    # The handler

    @staticmethod
    async def _write(response: web.StreamResponse, script: Script, frame: bytes) -> None:
        if script.crlf:
            frame = frame.replace(b"\n", b"\r\n")
        size = script.write_size or len(frame)
        for start in range(0, len(frame), size):
            await response.write(frame[start : start + size])

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = {"_raw": raw.decode("utf-8", "replace")}
        if not isinstance(body, dict):
            body = {"_raw": body}
        self.requests.append(
            Received(request.path, CIMultiDict(request.headers), body, time.monotonic())
        )
        chosen = self.choose(body) if self.choose is not None else None
        script = chosen or (self._queue.popleft() if self._queue else self.script)
        sent = 0
        finished = False
        try:
            if script.hang:
                await asyncio.sleep(3600)
            if script.first_byte_delay:
                await asyncio.sleep(script.first_byte_delay)
            if script.status >= 400:
                finished = True
                return web.Response(
                    status=script.status,
                    body=script.error_body or _error(script.status),
                    content_type="application/json",
                )
            if not body.get("stream") or script.json_answer:
                finished = True
                answer = web.Response(
                    body=dumps(_completion(script, body)), content_type="application/json"
                )
                if script.set_cookie:
                    answer.headers["Set-Cookie"] = script.set_cookie
                return answer
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            if script.set_cookie:
                response.headers["Set-Cookie"] = script.set_cookie
            await response.prepare(request)
            pending: list[bytes] = []  # held for one write (``one_write``)

            async def send(frame: bytes) -> None:
                if script.one_write:
                    pending.append(frame)
                else:
                    await self._write(response, script, frame)

            content_sent = 0
            for kind, frame in _frames(script, body):
                if kind == "content" and content_sent == script.cut_after:
                    # An abrupt end: no final chunk, no [DONE], no chunked terminator.
                    assert request.transport is not None
                    request.transport.abort()
                    finished = True
                    return response
                if kind == "content" and content_sent == script.stall_after:
                    await asyncio.sleep(3600)  # silent, connection open
                if kind == "content" and content_sent == script.error_after:
                    error = {"error": {"message": script.error_message, "type": "server_error"}}
                    await send(b"data: " + orjson.dumps(error) + b"\n\n")
                    await send(b"data: [DONE]\n\n")
                    break
                if script.chunk_delay and sent:
                    await asyncio.sleep(script.chunk_delay)
                if script.keepalive:
                    await send(b": keep-alive\n\n")
                await send(frame)
                sent += 1
                content_sent += kind == "content"
            if pending:
                await self._write(response, script, b"".join(pending))
            await response.write_eof()
            finished = True
            self.completed += 1
            return response
        finally:
            if not finished:
                self.disconnects.append(Disconnect(request.path, time.monotonic(), sent))
                self.disconnected.set()


def _error(status: int) -> bytes:
    kinds = {400: "invalid_request_error", 401: "authentication_error", 429: "rate_limit_error"}
    return orjson.dumps(
        {
            "error": {
                "message": f"fake upstream error {status}",
                "type": kinds.get(status, "server_error"),
                "param": None,
                "code": None,
            }
        }
    )


def _finish(script: Script) -> str:
    if script.finish_reason is not None:
        return script.finish_reason
    return "tool_calls" if script.tool_calls else "stop"


def _frames(script: Script, body: dict[str, Any]) -> list[tuple[str, bytes]]:
    """``(kind, frame)`` in wire order; kind is ``content`` for a delta chunk."""
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
        return b"data: " + orjson.dumps(c) + b"\n\n"

    frames: list[tuple[str, bytes]] = [("role", chunk({"role": "assistant", "content": ""}))]
    for i, text in enumerate(script.content):
        logprobs = {"content": [_logprob(text, i, body)], "refusal": None}
        frames.append(
            (
                "content",
                chunk({"content": text}, logprobs=logprobs if body.get("logprobs") else None),
            )
        )
    for index, call in enumerate(script.tool_calls):
        first = {
            "index": index,
            "id": call.call_id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        frames.append(("content", chunk({"tool_calls": [first]})))
        for piece in call.arguments:
            delta = {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
            frames.append(("content", chunk(delta)))
    if script.send_finish:
        frames.append(("finish", chunk({}, _finish(script))))
    if include_usage and script.usage is not None:
        frames.append(
            (
                "usage",
                b"data: " + dumps({**head, "choices": [], "usage": script.usage}) + b"\n\n",
            )
        )
    if script.send_done:
        frames.append(("done", b"data: [DONE]\n\n"))
    return frames


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
