"""``POST /v1/messages/count_tokens``: the Anthropic Messages front door's token count
(``POST /v1/messages`` itself is the generic door, ``gateway.server.door``).

Both take the key in ``x-api-key`` (as Anthropic's SDKs send it) or in
``Authorization: Bearer`` (``credentials.api_key_or_bearer``); ``anthropic-version``
and ``anthropic-beta`` are accepted whatever their value. Errors under
``/v1/messages`` come out in Anthropic's shape (the messages dialect's ``error``).
"""

from __future__ import annotations

from aiohttp import web

from gateway import tokens
from gateway.dialects.messages_parse import parse_messages_request
from gateway.server.body import json_response, read_request
from gateway.server.keys import API_KEY, GATEWAY


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
