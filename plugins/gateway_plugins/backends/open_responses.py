"""``open_responses``: an upstream that speaks Open Responses.

OpenAI's Responses API, another gateway, or LibreChat's
``/api/agents/v1/responses``. The request goes to ``base_url + "/responses"``,
always streamed and with ``store: false`` (the gateway keeps conversation
state itself), with the key from the environment variable ``api_key_env``
(never the client's) and the request's ``X-Request-Id``. The semantic events
of the answer are parsed by ``open_responses_wire.EventParser``; an upstream
that answers with a JSON response object instead of a stream is understood
too.

Set ``hold_tool_calls`` for an upstream that runs tools itself and shows them
as ``function_call`` items (LibreChat's agents): function calls are then passed
on when the response ends, and only the client's: calls to a tool the request
declared, without a ``function_call_output`` from the upstream.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from gateway.plugin import (
    AgentInvocation,
    BackendPlugin,
    Batch,
    CallContext,
    Event,
    ServerSentEvent,
)
from gateway_plugins.backends.http import HttpOptions, Upstream, json_object
from gateway_plugins.backends.open_responses_wire import EventParser, responses_body
from gateway_plugins.backends.unsupported import refuse_logprobs


@dataclass(frozen=True)
class OpenResponsesOptions(HttpOptions):
    """``base_url`` e.g. https://api.openai.com/v1 or http://librechat:3080/api/agents/v1."""

    hold_tool_calls: bool = False


class OpenResponsesBackend:
    def __init__(self, name: str, options: OpenResponsesOptions) -> None:
        self.name = name
        self.options = options
        self.upstream = Upstream(name, options)

    def headers(self, ctx: CallContext) -> dict[str, str]:
        headers = {"X-Request-Id": ctx.request_id, "Accept": "text/event-stream"}
        if self.options.api_key_env:
            headers["Authorization"] = f"Bearer {self.upstream.secret}"
        return headers

    def body(self, invocation: AgentInvocation, ctx: CallContext) -> dict[str, object]:
        refuse_logprobs(invocation, "open_responses")
        return responses_body(invocation, ctx.model)

    async def invoke(self, invocation: AgentInvocation, ctx: CallContext) -> AsyncIterator[Batch]:
        declared = frozenset(tool.name for tool in invocation.tools)
        parser = EventParser(hold_tool_calls=self.options.hold_tool_calls, client_tools=declared)
        body = self.body(invocation, ctx)
        done = False

        def parse(frame: ServerSentEvent) -> Iterable[Event]:
            nonlocal done
            if frame.data == "[DONE]":
                done = True
                return ()
            if ":" in frame.event:  # a vendor event, e.g. librechat:attachment
                return ()
            data = json_object(frame.data)
            kind = data.get("type")
            return parser.feed(kind if isinstance(kind, str) else frame.event, data)

        stream = self.upstream.answer(
            "/responses",
            body,
            self.headers(ctx),
            parse=parse,
            finished=lambda: done or parser.terminal is not None,
            whole=parser.response,  # the upstream ignored "stream"
        )
        with self.upstream.redacting():
            async with contextlib.aclosing(stream):
                async for events in stream:
                    yield events
        parser.finish()

    async def aclose(self) -> None:
        await self.upstream.aclose()


PLUGIN = BackendPlugin(options=OpenResponsesOptions, create=OpenResponsesBackend)
