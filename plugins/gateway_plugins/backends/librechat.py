"""``librechat``: LibreChat's Agents API (its Chat Completions endpoint) as an upstream.

``base_url`` is LibreChat's Agents API root, e.g.
``http://librechat:3080/api/agents/v1``; a route's ``model`` is the LibreChat
agent id (``agent_<nanoid>``). The gateway's keys replace LibreChat's: every
request carries one LibreChat API key per backend, read from the environment
variable ``api_key_env`` (required), never the client's.

This is the ``openai_chat`` backend (the same request building, stream
parsing and error mapping) plus what LibreChat's source needs (read from
``api/server/controllers/agents/openai.js`` and ``packages/api/src/agents/openai/``;
see ``docs/librechat.md``):

- the request carries only ``model``, ``messages`` and ``stream``: LibreChat ignores
  every other field (the agent's own settings apply), so none is sent;
- LibreChat accepts the roles system, user, assistant and tool (``validateRequest``:
  ``developer`` is a 400), puts the agent's own instructions first and leaves request
  ``system`` messages where they are, which Anthropic- and Google-backed agents then
  refuse ("System messages are only permitted as the first passed message"). So
  ``instructions``, ``system`` and ``developer`` text is sent as the opening of the
  first user message (``fold_system``, the default), which every provider accepts;
  with ``fold_system: false`` it goes as ``system`` messages (fine for OpenAI-backed
  agents only);
- ``reasoning`` deltas become reasoning; usage is read from the final chunk even
  though its ``choices`` is not empty. It carries prompt, completion and reasoning
  tokens, never cached ones (``sendFinalChunk``), so cached input is billed at the
  input price;
- tool-call chunks are dropped: they describe tools LibreChat runs itself, so a
  client must not execute them (a ``tool_calls`` finish becomes ``stop``);
- LibreChat's own named events in the stream (``event: attachment``,
  ``event: on_summarize_*``) are not chunks and are skipped (``openai_chat`` reads
  unnamed ``data:`` frames only);
- a provider failure after the headers arrives as a content chunk starting
  ``"\\n\\nError: "`` with finish ``stop``, ``[DONE]`` and no usage: it ends the answer
  as a failure, never text for the client, and what was delivered is billed by
  estimate. The message keeps the provider's status when it starts with one (the
  provider SDKs write ``"429 ..."``): a 429 stays a rate limit and a 400 an invalid
  request, so a route can fall back when nothing was delivered yet. Before the
  headers LibreChat forwards the provider's status itself (``http.upstream_error``);
- LibreChat's own refusals (401 for the service key, its non-OpenAI 403
  ``{"message": "Forbidden: Insufficient permissions"}``, a 403 ``access_denied`` or
  404 ``model_not_found`` for the agent) mean the gateway's configuration is wrong: a
  502 with LibreChat's message, never a 401/403 that would look like the client's own
  key failing.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from gateway.plugin import (
    AgentInvocation,
    BackendPlugin,
    Batch,
    CallContext,
    Completed,
    Event,
    GatewayError,
    InvalidRequest,
    RateLimited,
    TextDelta,
    ToolCallArgumentsDelta,
    ToolCallStarted,
    UpstreamError,
    Usage,
)
from gateway_plugins.backends.http import MAX_ERROR_MESSAGE
from gateway_plugins.backends.openai_chat import OpenAIChatBackend, OpenAIChatOptions
from gateway_plugins.backends.unsupported import refuse_logprobs

ERROR_PREFIX = "\n\nError: "
SENT_FIELDS = ("model", "messages", "stream")
"""The request fields LibreChat's chat endpoint reads (it ignores every other one)."""
_STATUS = re.compile(r"(\d{3})\b")  # "429 Rate limit reached ...", as the provider SDKs say


@dataclass(frozen=True)
class LibreChatOptions(OpenAIChatOptions):
    """``base_url`` e.g. http://librechat:3080/api/agents/v1; ``api_key_env`` is required."""

    api_key_env: str = field(metadata={"env": True})
    # Streamed answers fail visibly; a timeout applies between chunks, not to the whole run.
    always_stream: bool = True
    # instructions/system/developer as the opening of the first user message (every
    # provider accepts it), or false: as system messages (OpenAI-backed agents only).
    fold_system: bool = True


class LibreChatBackend(OpenAIChatBackend):
    def __init__(self, name: str, options: LibreChatOptions) -> None:
        super().__init__(name, options)
        self.fold_system = options.fold_system

    def body(self, invocation: AgentInvocation, ctx: CallContext) -> dict[str, object]:
        refuse_logprobs(invocation, "librechat")
        body = super().body(invocation, ctx)
        out = {k: body[k] for k in SENT_FIELDS if k in body}
        messages = body["messages"]
        assert isinstance(messages, list)
        if self.fold_system:
            out["messages"] = fold_system(messages)
        else:
            out["messages"] = [
                {**m, "role": "system"} if m.get("role") == "developer" else m for m in messages
            ]
        return out

    async def invoke(self, invocation: AgentInvocation, ctx: CallContext) -> AsyncIterator[Batch]:
        reads = super().invoke(invocation, ctx)
        failure: GatewayError | None = None
        try:
            async for batch in reads:
                events: list[Event] = []
                for event in batch:
                    if isinstance(event, ToolCallStarted | ToolCallArgumentsDelta):
                        continue  # a tool LibreChat runs itself: not the client's to execute
                    if failure is not None:  # after the error text, only a usage counts
                        if isinstance(event, Usage):
                            events.append(event)
                        continue
                    if isinstance(event, TextDelta) and event.text.startswith(ERROR_PREFIX):
                        failure = self._failure(event.text[len(ERROR_PREFIX) :])
                        continue
                    if isinstance(event, Completed) and event.finish_reason == "tool_calls":
                        event = Completed("stop")
                    events.append(event)
                if events:
                    yield tuple(events)
        finally:
            if isinstance(reads, AsyncGenerator):  # release the upstream response now
                await reads.aclose()
        if failure is not None:
            raise failure

    def _failure(self, text: str) -> GatewayError:
        """The error for LibreChat's error text, keeping the provider's status."""
        message = self.upstream.redact(text).strip()[:MAX_ERROR_MESSAGE] or "unknown error"
        detail = f"The upstream failed mid-stream: {message}"
        status = _STATUS.match(message)
        code = int(status.group(1)) if status else 0
        if code == 429:
            return RateLimited(detail)
        if code in (400, 422):
            return InvalidRequest(detail, code="upstream_rejected_request")
        return UpstreamError(detail)


def fold_system(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``messages`` without system/developer messages, their text opening the first user one.

    LibreChat keeps a request's system message where it is, after the agent's own
    instructions; Anthropic and Google providers refuse a system message that is not
    first. A user message is accepted by every provider.
    """
    preamble = [_text(m) for m in messages if m.get("role") in ("system", "developer")]
    rest = [m for m in messages if m.get("role") not in ("system", "developer")]
    text = "\n\n".join(p for p in preamble if p)
    if not text:
        return rest
    for i, message in enumerate(rest):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                opened: object = [{"type": "text", "text": text}, *content]
            else:
                opened = f"{text}\n\n{content or ''}".rstrip()
            return [*rest[:i], {**message, "content": opened}, *rest[i + 1 :]]
    return [{"role": "user", "content": text}, *rest]


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else []
    return "".join(p.get("text", "") for p in parts if isinstance(p, dict))


PLUGIN = BackendPlugin(options=LibreChatOptions, create=LibreChatBackend)
