"""The Chat Completions dialect (``POST /v1/chat/completions``)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from gateway.dialects import openai_errors
from gateway.dialects.chat_parse import ChatRequest, parse_chat_request
from gateway.dialects.chat_render import REASONING, ChatChunks, ChatCompletion
from gateway.dialects.request_limits import RequestLimits
from gateway.errors import GatewayError
from gateway.invocation import AgentInvocation

if TYPE_CHECKING:
    from gateway.config import GatewayConfig
    from gateway.plugin import CallContext

LIBRECHAT_PREFIX = "/api/agents/v1/"


def _reasoning_key(path: str) -> str:
    """LibreChat's clients, on its own prefix, read reasoning as ``reasoning``."""
    return "reasoning" if path.startswith(LIBRECHAT_PREFIX) else REASONING


class ChatDialect:
    name = "chat_completions"

    def parse(self, body: object, limits: RequestLimits) -> ChatRequest:
        return parse_chat_request(body, limits)

    def invocation(self, parsed: ChatRequest) -> AgentInvocation:
        return parsed.invocation

    def streamer(
        self, parsed: ChatRequest, ctx: CallContext, config: GatewayConfig, path: str
    ) -> ChatChunks:
        return ChatChunks(
            f"chatcmpl-{ctx.charge_id}",
            int(time.time()),
            parsed.invocation.agent,
            parsed.include_usage,
            _reasoning_key(path),
        )

    def folder(
        self, parsed: ChatRequest, ctx: CallContext, config: GatewayConfig, path: str
    ) -> ChatCompletion:
        return ChatCompletion(
            f"chatcmpl-{ctx.charge_id}",
            int(time.time()),
            parsed.invocation.agent,
            _reasoning_key(path),
        )

    def error(self, error: GatewayError, request_id: str) -> tuple[int, bytes]:
        return error.status, openai_errors.error_body(error)


CHAT = ChatDialect()
