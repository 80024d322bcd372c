"""``POST /v1/messages`` and ``/v1/messages/count_tokens``: the Anthropic Messages front door.

The key comes in ``x-api-key`` (as Anthropic's SDKs send it) or in
``Authorization: Bearer`` (``credentials.api_key_or_bearer``); ``anthropic-version``
and ``anthropic-beta`` are accepted whatever their value. Admission, metering,
limits and their headers are the other dialects'. Errors come out in Anthropic's shape because the
application lists ``/v1/messages`` in ``middlewares.ERROR_SHAPES``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from gateway import tokens
from gateway.dialects.messages_parse import parse_messages_request
from gateway.dialects.messages_render import MessageBuilder
from gateway.pipeline import Call
from gateway.server.body import budget, json_response, read_request
from gateway.server.keys import API_KEY, GATEWAY, REQUEST_ID
from gateway.server.streaming import send_sse


async def create_message(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    key = request[API_KEY]
    limits = gateway.config.limits
    body = await read_request(request, limits)
    invocation = parse_messages_request(body, limits)
    call = await gateway.open(invocation, key, request[REQUEST_ID], budget(request))
    async with call:
        builder = MessageBuilder(
            f"msg_{call.ctx.charge_id}",
            invocation.agent,
            tokens.estimate_input(invocation),
            stream=invocation.stream,
        )
        if invocation.stream:
            return await send_sse(request, _frames(builder, call), call.hold.headers())
        async for batch in call:
            for event in batch:
                builder.feed(event)
        if builder.failure is not None:
            raise builder.failure
        return json_response(
            builder.message, headers=call.hold.headers() | call.hold.billing_headers()
        )


async def _frames(builder: MessageBuilder, call: Call) -> AsyncIterator[bytes]:
    async for batch in call:
        frame = b"".join([builder.feed(event) for event in batch])
        if frame:
            yield frame


async def count_tokens(request: web.Request) -> web.Response:
    """``{"input_tokens": N}`` by the gateway's estimator (``gateway.tokens``).

    No backend offers a count through the backend protocol, so the estimate
    is the answer: the same one the gateway charges by when an upstream
    reports no usage. The agent must exist and be open to the key.
    """
    gateway = request.app[GATEWAY]
    key = request[API_KEY]
    limits = gateway.config.limits
    body = await read_request(request, limits)
    invocation = parse_messages_request(body, limits, count_only=True)
    gateway.route(key, invocation.agent)
    return json_response({"input_tokens": tokens.estimate_input(invocation)})
