"""The Open Responses dialect (``POST /v1/responses``); the state it keeps across
requests is ``gateway.conversation``'s."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from gateway.dialects import openai_errors
from gateway.dialects.request_limits import RequestLimits
from gateway.dialects.responses_parse import ResponsesRequest, parse_responses_request
from gateway.dialects.responses_render import ReasoningEvents, ResponseBuilder
from gateway.errors import GatewayError
from gateway.invocation import AgentInvocation
from gateway.wire.fields import invalid

if TYPE_CHECKING:
    from gateway.config import GatewayConfig
    from gateway.plugin import CallContext


class ResponsesDialect:
    name = "responses"

    def parse(self, body: object, limits: RequestLimits) -> ResponsesRequest:
        req = parse_responses_request(body, limits)
        if req.background and not req.store:
            raise invalid("store", "a background response must be stored to be retrieved")
        return req

    def invocation(self, parsed: ResponsesRequest) -> AgentInvocation:
        return parsed.invocation

    def streamer(
        self, parsed: ResponsesRequest, ctx: CallContext, config: GatewayConfig, path: str
    ) -> ResponseBuilder:
        return self.builder(parsed, ctx, config, stream=True)

    def folder(
        self, parsed: ResponsesRequest, ctx: CallContext, config: GatewayConfig, path: str
    ) -> ResponseBuilder:
        return self.builder(parsed, ctx, config, stream=False)

    def builder(
        self, parsed: ResponsesRequest, ctx: CallContext, config: GatewayConfig, *, stream: bool
    ) -> ResponseBuilder:
        """The response under construction; ``stream`` to have its events too."""
        reasoning = ctx.route.responses.reasoning_events or config.responses.reasoning_events
        return ResponseBuilder(
            f"resp_{ctx.charge_id}",
            parsed.invocation.agent,
            dict(parsed.echo),
            previous_response_id=parsed.previous_response_id,
            store=parsed.store,
            background=parsed.background,
            stream=stream,
            reasoning_events=cast(ReasoningEvents, reasoning),  # checked when the config was read
        )

    def error(self, error: GatewayError, request_id: str) -> tuple[int, bytes]:
        return error.status, openai_errors.error_body(error)


RESPONSES = ResponsesDialect()
