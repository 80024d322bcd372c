"""``POST /v1/chat/completions``: the Chat Completions front door."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from aiohttp import web

from gateway.dialects.chat_parse import parse_chat_request
from gateway.dialects.chat_render import REASONING, ChatChunks, completion_object
from gateway.pipeline import Call
from gateway.server.body import budget, json_response, read_request
from gateway.server.keys import API_KEY, GATEWAY, REQUEST_ID
from gateway.server.streaming import send_sse
from gateway.transcript import Transcript

LIBRECHAT_PREFIX = "/api/agents/v1/"


def _reasoning_key(request: web.Request) -> str:
    """LibreChat's clients, on its own prefix, read reasoning as ``reasoning``."""
    return "reasoning" if request.path.startswith(LIBRECHAT_PREFIX) else REASONING


async def chat_completions(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    key = request[API_KEY]
    limits = gateway.config.limits
    body = await read_request(request, limits)
    chat = parse_chat_request(body, limits)
    invocation = chat.invocation
    call = await gateway.open(invocation, key, request[REQUEST_ID], budget(request))
    async with call:
        completion_id = f"chatcmpl-{call.ctx.charge_id}"
        created = int(time.time())
        if not invocation.stream:
            transcript = Transcript()
            async for batch in call:
                for event in batch:
                    transcript.add(event)
            if transcript.failure is not None:
                raise transcript.failure.error
            body = completion_object(
                completion_id, created, invocation.agent, transcript, _reasoning_key(request)
            )
            return json_response(body, headers=call.hold.headers() | call.hold.billing_headers())
        chunks = ChatChunks(
            completion_id, created, invocation.agent, chat.include_usage, _reasoning_key(request)
        )
        return await send_sse(request, _frames(chunks, call), call.hold.headers())


async def _frames(chunks: ChatChunks, call: Call) -> AsyncIterator[bytes]:
    yield chunks.start()
    async for batch in call:
        frame = b"".join([chunks.render(event) for event in batch])
        if frame:
            yield frame
