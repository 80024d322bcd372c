"""A fake LibreChat Agents API on loopback (``/api/agents/v1/...``), rebuilt from its source.

Every behaviour names the LibreChat file it reproduces. Files were read at
danny-avila/LibreChat main of 2026 (controllers at commit 001d494c, the
``packages/api`` helpers alongside; the facts are summarised in
``shared/reference/librechat.md``, v0.8.4 and v0.8.8-rc1):

- routes (``api/server/routes/agents/index.js``): ``/v1/responses`` and ``/v1`` are
  mounted before the login-token middleware; ``legacy=True`` is a LibreChat before
  v0.8.3, where every ``/api/agents/*`` route wants a login token (401);
- auth (``packages/api/src/apiKeys/middleware.ts``, ``createRequireApiKeyAuth``): a
  missing or non-Bearer header, an empty key, an unknown key, a key whose user is
  gone: four 401 shapes;
- the ``remoteAgents.use`` role permission (``packages/api/src/middleware/access.ts``,
  ``generateCheckAccess``): 403 ``{"message": "Forbidden: Insufficient permissions"}``;
- per agent (``middleware.ts``, ``createCheckRemoteAgentAccess``): no model 400
  ``missing_model``, unknown agent 404 ``model_not_found``, no VIEW on the remote
  agent 403 ``permission_error``/``access_denied``;
- chat (``api/server/controllers/agents/openai.js``, ``packages/api/src/agents/openai/
  service.ts`` ``validateRequest``, ``handlers.ts`` ``sendFinalChunk``): roles other than
  system/user/assistant/tool are a 400; client sampling fields, tools and
  ``stream_options`` are ignored; the stream is a role chunk, ``delta.reasoning``,
  tool-call chunks for tools the agent runs itself, text, LibreChat's own named events
  (``event: attachment``, ``event: on_summarize_*``, ``callbacks.js``), and a final chunk
  with ``finish_reason`` AND ``usage`` (prompt/completion/total only: never
  ``prompt_tokens_details``), then ``[DONE]``; a provider failure after the headers is a
  content chunk ``"\\n\\nError: <message>"`` with finish ``stop``, then ``[DONE]``, and no
  usage; before them the provider's status is forwarded; an agent with
  ``disableStreaming`` answers JSON even to ``stream: true``;
- the agent's own instructions become the first system message and request ``system``
  messages stay where they are (``formatAgentMessages``): Anthropic and Google providers
  reject a system message that is not first;
- responses (``api/server/controllers/agents/responses.js``, ``packages/api/src/agents/
  responses/handlers.ts``, ``service.ts``): the Open Responses fake in LibreChat mode
  (``ResponsesScript(librechat=True)``): a tool the agent ran is a ``function_call``
  whose ``.done`` never comes and which gets no ``function_call_output`` (the
  controller replaces the handlers' ``on_tool_end``); a failure after the headers is a
  bare ``[DONE]``; ``previous_response_id`` is a conversation id (404 unless a request
  stored one with ``store: true``);
- ``GET /models``, ``GET /models/{id}`` (``openai.js``) and ``GET /responses/models``
  (``responses.js``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.base import DONE, Faults, Frame, Json, json_response, sse
from tests.fakes.open_responses_upstream import FakeResponsesUpstream, ResponsesScript

LIBRECHAT_KEY = "sk-" + "ab" * 32  # its keys: sk- and 64 hex digits
AGENT_ID = "agent_Xk2mT9qLp4Rz"
# access.ts, generateCheckAccess: the one answer that is not OpenAI-shaped.
FORBIDDEN = b'{"message":"Forbidden: Insufficient permissions"}'
ROLES = ("system", "user", "assistant", "tool")  # service.ts, validateRequest
# @langchain/anthropic's converter, thrown inside the run (no HTTP status of its own).
SYSTEM_NOT_FIRST = "System messages are only permitted as the first passed message."


@dataclass(frozen=True)
class Agent:
    """One LibreChat agent as the fake knows it."""

    id: str
    provider: str = "openAI"  # "anthropic"/"google": a system message must come first
    instructions: str | None = "You are the support agent."
    disable_streaming: bool = False  # model_parameters.disableStreaming
    remote_access: bool = True  # VIEW on the REMOTE_AGENT resource for the key's user
    name: str = "Support"


@dataclass(frozen=True)
class LibreChatTool:
    """A tool the agent runs inside LibreChat (shown as tool-call chunks)."""

    name: str
    arguments: str
    call_id: str = "call_lc_1"


@dataclass(frozen=True)
class ChatScript(Faults):
    """What the fake's chat endpoint does with one request (and the ``Faults`` every
    fake takes; ``status`` and ``error_body`` as below)."""

    reasoning: tuple[str, ...] = ()
    tools: tuple[LibreChatTool, ...] = ()  # run before the answer
    attachments: tuple[Json, ...] = ()  # ``event: attachment`` frames after the tools
    summarize: bool = False  # on_summarize_start/delta/complete frames before the answer
    content: tuple[str, ...] = ("Hello", " from", " LibreChat")
    # A provider failure after the headers (the SDKs' messages start with the status):
    # the chunk "\n\nError: <error>" with finish stop, [DONE], never usage (openai.js).
    error: str | None = None
    usage: Any = field(  # the final chunk's usage, sent as given (any JSON value)
        default_factory=lambda: {"prompt_tokens": 21, "completion_tokens": 4, "total_tokens": 25}
    )
    # A failure before the headers: ``status`` >= 400 (openai.js forwards a provider's
    # error.status) with createErrorResponse's body, or ``error_body`` as given.


class FakeLibreChat(FakeResponsesUpstream):
    def __init__(
        self, key: str = LIBRECHAT_KEY, agents: tuple[str | Agent, ...] = (AGENT_ID,)
    ) -> None:
        super().__init__()
        self.key = key
        self.agents = agents
        self.forbidden = False  # the key's user's role lacks remoteAgents.use
        self.user_missing = False  # the key's user was deleted
        self.legacy = False  # before v0.8.3: /api/agents/* wants a login token
        self.script = ResponsesScript(librechat=True)
        self.chat = ChatScript()
        self._chat_queue: deque[ChatScript] = deque()
        self.conversations: set[str] = set()  # responses stored with store: true

    @property
    def base_url(self) -> str:
        return f"{self.url}/api/agents/v1"

    def enqueue_chat(self, *scripts: ChatScript) -> None:
        self._chat_queue.extend(scripts)

    def agent(self, agent_id: object) -> Agent | None:
        for agent in self.agents:
            found = agent if isinstance(agent, Agent) else Agent(agent)
            if found.id == agent_id:
                return found
        return None

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/api/agents/v1/responses", self.handle)
        app.router.add_get("/api/agents/v1/responses/models", self._models)
        app.router.add_post("/api/agents/v1/chat/completions", self._chat)
        app.router.add_get("/api/agents/v1/models", self._models)
        app.router.add_get("/api/agents/v1/models/{model}", self._model)

    # The middlewares, in LibreChat's order: key, role permission, agent access.

    def _key_refusal(self, request: web.Request) -> web.Response | None:
        if self.legacy:  # requireJwtAuth (passport) on every /api/agents route
            return web.Response(status=401, text="Unauthorized")
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return _error(
                401,
                "Missing or invalid Authorization header. Expected: Bearer <api_key>",
                code="missing_api_key",
            )
        key = header[len("Bearer ") :]
        if not key.strip():
            return _error(401, "API key is required", code="missing_api_key")
        if key != self.key:
            return _error(401, "Invalid API key", code="invalid_api_key")
        if self.user_missing:
            return _error(401, "User not found for this API key", code="invalid_api_key")
        if self.forbidden:
            return web.Response(status=403, body=FORBIDDEN, content_type="application/json")
        return None

    def _refusal(self, request: web.Request, body: Json) -> web.Response | None:
        refusal = self._key_refusal(request)
        if refusal is not None:
            return refusal
        model = body.get("model")
        if not isinstance(model, str) or not model.strip():
            return _error(400, "Model (agent ID) is required", code="missing_model")
        agent = self.agent(model)
        if agent is None:
            return _error(404, f"Agent not found: {model}", code="model_not_found")
        if not agent.remote_access:
            return _error(
                403,
                f"No remote access to agent: {model}",
                kind="permission_error",
                code="access_denied",
            )
        return None

    # Models (openai.js ListModelsController / GetModelController; responses.js listModels)

    async def _models(self, request: web.Request) -> web.Response:
        refusal = self._key_refusal(request)
        if refusal is not None:
            return refusal
        data = [
            _model(a) for a in (self.agent(_id(a)) for a in self.agents) if a and a.remote_access
        ]
        return web.json_response({"object": "list", "data": data})

    async def _model(self, request: web.Request) -> web.Response:
        refusal = self._key_refusal(request)
        if refusal is not None:
            return refusal
        model = request.match_info["model"]
        agent = self.agent(model)
        if agent is None:
            return _error(404, f"Model not found: {model}", code="model_not_found")
        if not agent.remote_access:
            return _error(
                403,
                f"No remote access to model: {model}",
                kind="permission_error",
                code="access_denied",
            )
        return web.json_response(_model(agent))

    # Open Responses

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await self.record(request)
        refusal = self._refusal(request, body)
        if refusal is not None:
            return refusal
        previous = body.get("previous_response_id")
        if previous is not None and previous not in self.conversations:
            # responses.js: previous_response_id is a conversation id, known only if stored.
            return _responses_error(404, "Conversation not found", "not_found")
        script = self._queue.popleft() if self._queue else self.script
        agent = self.agent(body.get("model"))
        assert agent is not None
        if body.get("store") is True:
            self.conversations.add(f"conv_{len(self.requests)}")
        if agent.disable_streaming:  # responses.js: actuallyStreaming = stream && !disabled
            body = {**body, "stream": False}
        return await self.respond(request, script, body)

    # Chat Completions

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await self.record(request)
        refusal = self._refusal(request, body)
        if refusal is not None:
            return refusal
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _error(400, "messages array cannot be empty")
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in ROLES:
                return _error(
                    400, f"messages[{i}].role must be one of: system, user, assistant, tool"
                )
        agent = self.agent(body.get("model"))
        assert agent is not None
        script = self._chat_queue.popleft() if self._chat_queue else self.chat
        failed: web.Response | None = None
        if script.status >= 400:  # a failure before the headers: the provider's status
            kind = "invalid_request_error" if script.status < 500 else "server_error"
            message = script.error or "provider failed"
            error = script.error_body or orjson.dumps(
                {"error": {"message": message, "type": kind, "param": None, "code": None}}
            )
            failed = web.Response(status=script.status, body=error, content_type="application/json")
        failure = script.error
        if agent.provider in ("anthropic", "google") and _system_not_first(agent, messages):
            failure = SYSTEM_NOT_FIRST
        return await self.answer(
            request,
            script,
            stream=body.get("stream") is True and not agent.disable_streaming,
            whole=lambda: self._whole(script, agent, failure),
            frames=lambda: _frames(script, agent.id, failure),
            headers={"Cache-Control": "no-cache"},
            refusal=failed,
        )

    def _whole(self, script: ChatScript, agent: Agent, failure: str | None) -> web.Response:
        """openai.js without streaming: buildNonStreamingResponse, or the error's status."""
        if failure is not None:  # before any header: a thrown Error without status is a 500
            return _error(500, failure, kind="server_error")
        text = "".join(script.content)
        message: Json = {"role": "assistant", "content": text or None}
        if script.reasoning:
            message["reasoning"] = "".join(script.reasoning)
        if script.tools:
            message["tool_calls"] = [
                {
                    "id": t.call_id,
                    "type": "function",
                    "function": {"name": t.name, "arguments": t.arguments},
                }
                for t in script.tools
            ]
        completion = {
            "id": "chatcmpl-lc1",
            "object": "chat.completion",
            "created": 1700000000,
            "model": agent.id,
            "choices": [{"index": 0, "message": message, "finish_reason": _finish(script)}],
            "usage": script.usage,
        }
        return json_response(completion)


def _id(agent: str | Agent) -> str:
    return agent.id if isinstance(agent, Agent) else agent


def _model(agent: Agent) -> Json:
    return {
        "id": agent.id,
        "object": "model",
        "created": 1700000000,
        "owned_by": "librechat",
        "permission": [],
        "root": agent.id,
        "parent": None,
        "name": agent.name,
        "description": None,
        "provider": agent.provider,
    }


def _error(
    status: int, message: str, code: str | None = None, kind: str = "invalid_request_error"
) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def _responses_error(status: int, message: str, kind: str, code: str | None = None) -> web.Response:
    """``sendResponsesErrorResponse`` (packages/api/src/agents/responses/service.ts)."""
    body = {"error": {"type": kind, "message": message, "code": code, "param": None}}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def _system_not_first(agent: Agent, messages: list[Json]) -> bool:
    """Whether the provider sees a system message after the first one it is given."""
    roles = (["system"] if agent.instructions else []) + [m["role"] for m in messages]
    return "system" in roles[1:]


def _finish(script: ChatScript) -> str:
    # handlers.ts sendFinalChunk / buildNonStreamingResponse: tools and no text
    return "tool_calls" if script.tools and not "".join(script.content) else "stop"


def _frames(script: ChatScript, model: str, failure: str | None) -> list[Frame]:
    """The frames in wire order; kind ``content`` for a text delta."""

    def chunk(delta: Json, finish: str | None = None, usage: Any = None) -> Sequence[bytes]:
        out: Json = {
            "id": "chatcmpl-lc1",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if usage is not None:
            out["usage"] = usage
        return [sse(out)]

    done: Frame = ("done", [DONE])
    frames: list[Frame] = [("role", chunk({"role": "assistant"}))]
    if failure is not None and failure == SYSTEM_NOT_FIRST:  # the provider refused at once
        frames.append(("error", chunk({"content": f"\n\nError: {failure}"}, "stop")))
        return [*frames, done]
    if script.summarize:
        frames.append(("event", [sse({"agentId": model}, "on_summarize_start")]))
        frames.append(
            ("event", [sse({"delta": {"summary": "Earlier: ..."}}, "on_summarize_delta")])
        )
        frames.append(("event", [sse({"agentId": model}, "on_summarize_complete")]))
    for piece in script.reasoning:
        frames.append(("content", chunk({"reasoning": piece})))
    for index, tool in enumerate(script.tools):
        start = {"index": index, "id": tool.call_id, "type": "function"}
        start["function"] = {"name": tool.name, "arguments": ""}
        frames.append(("content", chunk({"tool_calls": [start]})))
        arguments = {"index": index, "function": {"arguments": tool.arguments}}
        frames.append(("content", chunk({"tool_calls": [arguments]})))
    for attachment in script.attachments:
        frames.append(("event", [sse(attachment, "attachment")]))
    for piece in script.content:
        frames.append(("content", chunk({"content": piece})))
    if failure is not None:
        frames.append(("error", chunk({"content": f"\n\nError: {failure}"}, "stop")))
        return [*frames, done]
    frames.append(("finish", chunk({}, _finish(script), script.usage)))
    return [*frames, done]
