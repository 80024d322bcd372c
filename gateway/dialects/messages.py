"""The Anthropic Messages dialect (``POST /v1/messages``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway import tokens
from gateway.dialects import anthropic_errors
from gateway.dialects.messages_parse import parse_messages_request
from gateway.dialects.messages_render import MessageBuilder
from gateway.dialects.request_limits import RequestLimits
from gateway.errors import GatewayError
from gateway.invocation import AgentInvocation

if TYPE_CHECKING:
    from gateway.config import GatewayConfig
    from gateway.plugin import CallContext


class MessagesDialect:
    name = "messages"

    def parse(self, body: object, limits: RequestLimits) -> AgentInvocation:
        return parse_messages_request(body, limits)

    def invocation(self, parsed: AgentInvocation) -> AgentInvocation:
        return parsed

    def streamer(
        self, parsed: AgentInvocation, ctx: CallContext, config: GatewayConfig, path: str
    ) -> MessageBuilder:
        return self._builder(parsed, ctx, stream=True)

    def folder(
        self, parsed: AgentInvocation, ctx: CallContext, config: GatewayConfig, path: str
    ) -> MessageBuilder:
        return self._builder(parsed, ctx, stream=False)

    def _builder(
        self, parsed: AgentInvocation, ctx: CallContext, *, stream: bool
    ) -> MessageBuilder:
        estimate = tokens.estimate_input(parsed)  # message_start's usage, until the upstream's
        return MessageBuilder(f"msg_{ctx.charge_id}", parsed.agent, estimate, stream=stream)

    def error(self, error: GatewayError, request_id: str) -> tuple[int, bytes]:
        return anthropic_errors.status(error), anthropic_errors.error_body(error, request_id)


MESSAGES = MessagesDialect()
