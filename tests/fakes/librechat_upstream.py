"""A fake LibreChat Agents API on loopback (``/api/agents/v1/...``).

It behaves as LibreChat v0.8.x does (``../shared/reference/librechat.md``):

- auth: only ``Authorization: Bearer <its key>``; otherwise 401
  ``{"error": {"code": "invalid_api_key"}}``; a key without the remoteAgents
  permission (``forbidden=True``) gets LibreChat's non-OpenAI 403
  ``{"message": "Forbidden: Insufficient permissions"}``;
- ``model`` must be one of its agent ids (404 ``model_not_found`` otherwise);
- ``POST /chat/completions``: a ``developer`` message is a 400; the stream is
  ``data:`` frames only: a first chunk with the role, ``reasoning`` deltas,
  content deltas, tool-call chunks for tools the agent runs itself, and a
  FINAL chunk that carries ``finish_reason`` AND ``usage`` with non-empty
  ``choices`` (whatever ``stream_options`` says), then ``[DONE]``. An error
  after the stream began is a content chunk ``"\\n\\nError: ..."`` with
  ``finish_reason: "stop"``;
- ``POST /responses``: the Open Responses fake in LibreChat mode
  (``ResponsesScript(librechat=True)``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.loopback import dumps
from tests.fakes.open_responses_upstream import FakeResponsesUpstream, ResponsesScript

Json = dict[str, Any]

LIBRECHAT_KEY = "sk-" + "ab" * 32  # its keys: sk- and 64 hex digits
AGENT_ID = "agent_Xk2mT9qLp4Rz"
FORBIDDEN = b'{"message":"Forbidden: Insufficient permissions"}'


@dataclass(frozen=True)
class LibreChatTool:
    """A tool the agent runs inside LibreChat (shown as tool-call chunks)."""

    name: str
    arguments: str
    call_id: str = "call_lc_1"


@dataclass(frozen=True)
class ChatScript:
    """What the fake's chat endpoint does with one request."""

    reasoning: tuple[str, ...] = ()
    tools: tuple[LibreChatTool, ...] = ()  # run before the answer
    content: tuple[str, ...] = ("Hello", " from", " LibreChat")
    error: str | None = None  # after the content: "\n\nError: <error>"
    usage: Any = field(  # sent as given (any JSON value); None: no usage
        default_factory=lambda: {"prompt_tokens": 21, "completion_tokens": 4, "total_tokens": 25}
    )
    usage_on_error: bool = True  # the error chunk ends the stream; with usage or not
    finish_reason: str = "stop"
    status: int = 200  # >= 400: answer with this status and ``error_body``
    error_body: bytes | None = None
    chunk_delay: float = 0.0
    json_answer: bool = False  # one chat.completion even to stream: true (streaming off)


class FakeLibreChat(FakeResponsesUpstream):
    def __init__(self, key: str = LIBRECHAT_KEY, agents: tuple[str, ...] = (AGENT_ID,)) -> None:
        super().__init__()
        self.key = key
        self.agents = agents
        self.forbidden = False
        self.script = ResponsesScript(librechat=True)
        self.chat = ChatScript()
        self._chat_queue: deque[ChatScript] = deque()

    @property
    def base_url(self) -> str:
        return f"{self.url}/api/agents/v1"

    def enqueue_chat(self, *scripts: ChatScript) -> None:
        self._chat_queue.extend(scripts)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/api/agents/v1/responses", self.handle)
        app.router.add_post("/api/agents/v1/chat/completions", self._chat)

    def _refusal(self, request: web.Request, body: Json) -> web.Response | None:
        """LibreChat's answers to a request it will not run."""
        if request.headers.get("Authorization") != f"Bearer {self.key}":
            return _error(401, "Invalid API key", code="invalid_api_key")
        if self.forbidden:
            return web.Response(status=403, body=FORBIDDEN, content_type="application/json")
        if body.get("model") not in self.agents:
            return _error(404, f"Agent not found: {body.get('model')}", code="model_not_found")
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await self.record(request)
        refusal = self._refusal(request, body)
        if refusal is not None:
            return refusal
        script = self._queue.popleft() if self._queue else self.script
        return await self.answer(request, script, body)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await self.record(request)
        refusal = self._refusal(request, body)
        if refusal is not None:
            return refusal
        for message in body.get("messages") or ():
            if message.get("role") not in ("system", "user", "assistant", "tool"):
                return _error(400, f"Invalid role: {message.get('role')}")
        script = self._chat_queue.popleft() if self._chat_queue else self.chat
        if script.status >= 400:
            error = script.error_body or orjson.dumps({"error": {"message": "provider failed"}})
            return web.Response(status=script.status, body=error, content_type="application/json")
        if script.json_answer:
            return web.json_response(_completion(script, str(body.get("model"))))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for n, chunk in enumerate(_chunks(script, str(body.get("model")))):
            if script.chunk_delay and n:
                await asyncio.sleep(script.chunk_delay)
            await response.write(b"data: " + dumps(chunk) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def _error(status: int, message: str, code: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "code": code}}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def _completion(script: ChatScript, model: str) -> Json:
    message: Json = {"role": "assistant", "content": "".join(script.content)}
    if script.reasoning:
        message["reasoning"] = "".join(script.reasoning)
    out: Json = {
        "id": "chatcmpl-lc1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": script.finish_reason}],
    }
    if script.usage is not None:
        out["usage"] = script.usage
    return out


def _chunks(script: ChatScript, model: str) -> list[Json]:
    def chunk(delta: Json, finish: str | None = None, usage: Any = None) -> Json:
        out: Json = {
            "id": "chatcmpl-lc1",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if usage is not None:
            out["usage"] = usage
        return out

    chunks = [chunk({"role": "assistant"})]
    for piece in script.reasoning:
        chunks.append(chunk({"reasoning": piece}))
    for index, tool in enumerate(script.tools):
        call = {
            "index": index,
            "id": tool.call_id,
            "type": "function",
            "function": {"name": tool.name, "arguments": tool.arguments},
        }
        chunks.append(chunk({"tool_calls": [call]}))
    for piece in script.content:
        chunks.append(chunk({"content": piece}))
    if script.error is not None:
        usage = script.usage if script.usage_on_error else None
        chunks.append(chunk({"content": f"\n\nError: {script.error}"}, "stop", usage))
        return chunks
    chunks.append(chunk({}, script.finish_reason, script.usage))
    return chunks
