"""The front door: one handler, made per dialect, for every agent endpoint.

Each request takes the same steps: the caller's key (put on the request by
``gateway.server.credentials``), the body read within the configured limits,
``dialect.parse``, the call opened (``Gateway.open``: route, admission, first
answer), then either its events streamed as the dialect's SSE frames
(``dialect.streamer``) or folded into one JSON body (``dialect.folder``). Errors
are raised, and answered in the dialect's shape by the error middleware.

A dialect that keeps state across requests adds a ``Conversation``: it builds
the invocation from the stored context, and answers once the call is open (Open
Responses does, in ``gateway.server.responses``), with ``send_stream`` and
``send_folded`` as the plain door does.

A ``Door`` is what the application registers: the handler for the route table,
and its dialect, whose ``name`` labels the requests in the metrics and whose
``error`` shapes every error under the endpoint's path.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.dialects.dialect import Dialect, Folder, Streamer
from gateway.events import Completed, Failed
from gateway.invocation import AgentInvocation
from gateway.pipeline import Call, Gateway
from gateway.server.body import budget, json_response, read_request
from gateway.server.keys import API_KEY, GATEWAY, REQUEST_ID
from gateway.server.streaming import send_sse
from gateway.store import ApiKey

P = TypeVar("P")
P_contra = TypeVar("P_contra", contravariant=True)

Keep = Callable[[], Awaitable[None]]
"""Keeps a finished answer (stores it) before the client hears that it is finished."""

_TERMINAL = (Completed, Failed)


class Conversation(Protocol[P_contra]):
    """What a dialect that keeps state across requests adds to the door."""

    async def invocation(self, gateway: Gateway, key: ApiKey, parsed: P_contra) -> AgentInvocation:
        """The invocation ``parsed`` asks for, with the stored context it names."""
        ...

    async def answer(
        self, request: web.Request, parsed: P_contra, invocation: AgentInvocation, call: Call
    ) -> web.StreamResponse:
        """Answer with the open ``call``, and close it (or hand it to a task that will)."""
        ...


@dataclass(frozen=True, slots=True)
class Door(Generic[P]):
    dialect: Dialect[P]
    handler: Handler


def front_door(dialect: Dialect[P], conversation: Conversation[P] | None = None) -> Door[P]:
    async def handle(request: web.Request) -> web.StreamResponse:
        gateway = request.app[GATEWAY]
        key = request[API_KEY]
        limits = gateway.config.limits
        parsed = dialect.parse(await read_request(request, limits), limits)
        if conversation is not None:
            invocation = await conversation.invocation(gateway, key, parsed)
        else:
            invocation = dialect.invocation(parsed)
        call = await gateway.open(invocation, key, request[REQUEST_ID], budget(request))
        if conversation is not None:
            return await conversation.answer(request, parsed, invocation, call)
        async with call:  # closing it settles what was delivered
            if invocation.stream:
                streamer = dialect.streamer(parsed, call.ctx, gateway.config, request.path)
                return await send_sse(request, _frames(streamer, call), call.hold.headers())
            folder = dialect.folder(parsed, call.ctx, gateway.config, request.path)
            async for batch in call:
                folder.fold(batch)
        return send_folded(call, folder)

    return Door(dialect, handle)


async def send_stream(
    request: web.Request, call: Call, streamer: Streamer, keep: Keep | None = None
) -> web.StreamResponse:
    """Stream the call's events as ``streamer``'s frames (the caller closes the call);
    ``keep`` runs after the terminal event is rendered, before its frames go out."""
    frames = _frames(streamer, call) if keep is None else _kept(streamer, call, keep)
    return await send_sse(request, frames, call.hold.headers())


def send_folded(call: Call, folder: Folder) -> web.Response:
    """The folded answer of a closed call, with its cost and the key's balance."""
    return json_response(folder.body(), headers=call.hold.headers() | call.hold.billing_headers())


async def _frames(streamer: Streamer, call: Call) -> AsyncIterator[bytes]:
    head = streamer.head()
    if head:
        yield head
    async for batch in call:
        frame = streamer.frames(batch)
        if frame:
            yield frame


async def _kept(streamer: Streamer, call: Call, keep: Keep) -> AsyncIterator[bytes]:
    head = streamer.head()
    if head:
        yield head
    async for batch in call:
        frame = streamer.frames(batch)
        if batch and isinstance(batch[-1], _TERMINAL):  # kept before the client hears it ended
            await keep()
        if frame:
            yield frame
