"""``a2a``: a remote A2A agent (A2A 1.0, its JSON-RPC binding) as a backend.

``url`` is the agent's JSON-RPC endpoint (its card's ``supportedInterfaces`` entry
with ``protocolBinding: JSONRPC``). Each call is one ``SendStreamingMessage`` with
``A2A-Version: 1.0``; the credential comes from the environment variable
``api_key_env``, sent as ``Authorization: Bearer`` or in the header
``api_key_header`` names. What is sent and how the answer is read:
``gateway_plugins.backends.a2a_wire``. The HTTP side (pool, timeouts, error mapping,
SSE decoding, closing the upstream when the client leaves) is
``gateway_plugins.backends.http``'s, as for every HTTP backend.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from gateway.plugin import (
    AgentInvocation,
    BackendPlugin,
    Batch,
    CallContext,
    Event,
    ServerSentEvent,
    UpstreamError,
)
from gateway_plugins.backends.a2a_wire import StreamParser, request_body
from gateway_plugins.backends.http import HttpOptions, Upstream

VERSION = "1.0"


def _header(value: str) -> str | None:
    return None if value and value.isascii() and ":" not in value else "must be a header name"


@dataclass(frozen=True)
class A2AOptions(HttpOptions):
    """``base_url``: the agent's JSON-RPC URL, e.g. http://agent:9999/ (its card says)."""

    # The header that carries the credential: Authorization (as a bearer token) or e.g.
    # X-API-Key (as it is).
    api_key_header: str = field(default="Authorization", metadata={"check": _header})


class A2ABackend:
    def __init__(self, name: str, options: A2AOptions) -> None:
        self.name = name
        self.upstream = Upstream(name, options)
        self.api_key_header = options.api_key_header

    def headers(self, ctx: CallContext) -> dict[str, str]:
        headers = {
            "A2A-Version": VERSION,
            "Accept": "text/event-stream",
            "X-Request-Id": ctx.request_id,
        }
        if self.upstream.options.api_key_env:
            secret = self.upstream.secret
            bearer = self.api_key_header.lower() == "authorization"
            headers[self.api_key_header] = f"Bearer {secret}" if bearer else secret
        return headers

    async def invoke(self, invocation: AgentInvocation, ctx: CallContext) -> AsyncIterator[Batch]:
        body = request_body(invocation, f"msg-{ctx.charge_id}", ctx.request_id)
        parser = StreamParser()

        def parse(frame: ServerSentEvent) -> list[Event]:
            if parser.done or not frame.data:
                return []
            return parser.feed_data(frame.data)

        def whole(answer: dict[str, object]) -> list[Event]:
            # One JSON-RPC response instead of a stream: an error before the stream
            # began, or an agent that answered whole.
            events = parser.feed(answer)
            if not parser.done:
                raise UpstreamError("The A2A agent answered a task that has not ended.")
            return events

        stream = self.upstream.answer(
            "", body, self.headers(ctx), parse=parse, finished=lambda: parser.done, whole=whole
        )
        with self.upstream.redacting():
            async with contextlib.aclosing(stream):
                async for events in stream:
                    yield events
            parser.finish()  # raises if the stream ended before the task did

    async def aclose(self) -> None:
        await self.upstream.aclose()


PLUGIN = BackendPlugin(options=A2AOptions, create=A2ABackend)
