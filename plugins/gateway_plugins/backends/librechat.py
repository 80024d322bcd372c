"""``librechat``: LibreChat's Agents API (its Chat Completions endpoint) as an upstream.

``base_url`` is LibreChat's Agents API root, e.g.
``http://librechat:3080/api/agents/v1``; a route's ``model`` is the LibreChat
agent id (``agent_<nanoid>``). The gateway's keys replace LibreChat's: every
request carries one LibreChat API key per backend, read from the environment
variable ``api_key_env`` (required), never the client's.

This is the ``openai_chat`` backend (the same request building, stream
parsing and error mapping) plus the normalisation LibreChat needs (see
``docs/librechat.md``):

- ``developer`` messages are sent as ``system`` (LibreChat answers 400 to
  ``developer``);
- the fields LibreChat ignores because the agent's own settings apply
  (``tools``, ``tool_choice``, ``parallel_tool_calls``, ``temperature``,
  ``top_p``, penalties, ``seed``, ``stop``, ``max_tokens``,
  ``response_format``, ``reasoning_effort``) are not sent, so that the
  upstream request says what will actually happen;
- ``reasoning`` deltas become reasoning, and usage is read from the final
  chunk even though its ``choices`` is not empty (``ChunkParser`` reads usage
  from any chunk);
- tool-call chunks are dropped: they describe tools LibreChat runs itself, so
  a client must not execute them (a ``tool_calls`` finish becomes ``stop``);
- an error after the stream began arrives as a content chunk starting
  ``"\\n\\nError: "``: it ends the answer as a failure (the usage LibreChat
  still reports is billed), not text for the client;
- LibreChat's 403 ``{"message": "Forbidden: Insufficient permissions"}`` (not
  OpenAI-shaped) and its 401s mean the gateway's service key lacks access: a
  502 with LibreChat's message (``http.upstream_error``), never a 401/403 that
  would look like the client's own key failing.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field

from gateway.errors import UpstreamError
from gateway.events import (
    Batch,
    Completed,
    TextDelta,
    ToolCallArgumentsDelta,
    ToolCallStarted,
    Usage,
)
from gateway.invocation import AgentInvocation
from gateway.plugin import BackendPlugin, CallContext
from gateway_plugins.backends.http import MAX_ERROR_MESSAGE
from gateway_plugins.backends.openai_chat import OpenAIChatBackend, OpenAIChatOptions
from gateway_plugins.backends.unsupported import refuse_logprobs

ERROR_PREFIX = "\n\nError: "
SENT_FIELDS = ("model", "messages", "stream", "stream_options")
"""The only request fields LibreChat's chat endpoint uses (``stream_options`` is harmless)."""


@dataclass(frozen=True)
class LibreChatOptions(OpenAIChatOptions):
    """``base_url`` e.g. http://librechat:3080/api/agents/v1; ``api_key_env`` is required."""

    api_key_env: str = field(metadata={"env": True})
    # Its agents answer as streams (its non-streamed answers lose usage and tool rounds).
    always_stream: bool = True


class LibreChatBackend(OpenAIChatBackend):
    def __init__(self, name: str, options: LibreChatOptions) -> None:
        super().__init__(name, options)

    def body(self, invocation: AgentInvocation, ctx: CallContext) -> dict[str, object]:
        refuse_logprobs(invocation, "librechat")
        body = super().body(invocation, ctx)
        out = {k: body[k] for k in SENT_FIELDS if k in body}
        messages = body["messages"]
        assert isinstance(messages, list)
        out["messages"] = [
            {**m, "role": "system"} if m.get("role") == "developer" else m for m in messages
        ]
        return out

    async def invoke(self, invocation: AgentInvocation, ctx: CallContext) -> AsyncIterator[Batch]:
        reads = super().invoke(invocation, ctx)
        failure: UpstreamError | None = None
        try:
            async for batch in reads:
                events: Batch = []
                for event in batch:
                    if isinstance(event, ToolCallStarted | ToolCallArgumentsDelta):
                        continue  # a tool LibreChat runs itself: not the client's to execute
                    if failure is not None:  # after the error text, only the usage counts
                        if isinstance(event, Usage):
                            events.append(event)
                        continue
                    if isinstance(event, TextDelta) and event.text.startswith(ERROR_PREFIX):
                        message = self.upstream.redact(event.text[len(ERROR_PREFIX) :]).strip()
                        message = message[:MAX_ERROR_MESSAGE] or "unknown error"
                        failure = UpstreamError(f"The upstream failed mid-stream: {message}")
                        continue
                    if isinstance(event, Completed) and event.finish_reason == "tool_calls":
                        event = Completed("stop")
                    events.append(event)
                if events:
                    yield events
        finally:
            if isinstance(reads, AsyncGenerator):  # release the upstream response now
                await reads.aclose()
        if failure is not None:
            raise failure


PLUGIN = BackendPlugin(options=LibreChatOptions, create=LibreChatBackend)
