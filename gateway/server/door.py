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

A dialect whose one endpoint carries many methods (a ``Methods``: A2A's JSON-RPC)
is served by ``method_door``, through the same parts: the body read within the
limits, the dialect's ``parse``, then the operation its method names. An
operation either opens no call (``Reads``: a stored task read, listed, cancelled
or followed) or prepares one (``Opens``): the door opens it as above, and the
prepared ``Opened.answer`` answers with it, or hands it to a tracked task that
outlives the request (``gateway.tasks``; a run that no client holds). Either
answers a plain value, which the dialect puts in its envelope, or a ``Streamed``
series of them, sent as SSE frames. A method's error is answered by the dialect's
``failure``, in its envelope.

A ``Door`` is what the application registers: the handler for the route table,
and its dialect, whose ``name`` labels the requests in the metrics and whose
``error`` shapes every error under the endpoint's path.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.dialects.dialect import Dialect, Folder, Methods, Streamer
from gateway.errors import GatewayError
from gateway.invocation import AgentInvocation
from gateway.pipeline import Call, Gateway
from gateway.server.body import budget, json_response, parse_input_now, read_parse_input
from gateway.server.keys import API_KEY, GATEWAY, REQUEST_ID
from gateway.server.middlewares import ERROR
from gateway.server.streaming import send_reads, send_sse
from gateway.store import ApiKey

P = TypeVar("P")
P_contra = TypeVar("P_contra", contravariant=True)

Keep = Callable[[], Awaitable[None]]
"""Keeps a finished answer (stores it) before the client hears that it is finished."""


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
    dialect: Dialect[P] | Methods[P]
    handler: Handler


def front_door(dialect: Dialect[P], conversation: Conversation[P] | None = None) -> Door[P]:
    async def handle(request: web.Request) -> web.StreamResponse:
        gateway = request.app[GATEWAY]
        key = request[API_KEY]
        limits = gateway.config.limits
        got = parse_input_now(request, limits) or await read_parse_input(request, limits)
        parsed = dialect.parse(*got)
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
                return await send_reads(
                    request, call, streamer.frames, streamer.head(), call.hold.headers()
                )
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
    return await send_reads(
        request, call, streamer.frames, streamer.head(), call.hold.headers(), keep
    )


def send_folded(call: Call, folder: Folder) -> web.Response:
    """The folded answer of a closed call, with its cost and the key's balance."""
    return json_response(folder.body(), headers=call.hold.headers() | call.hold.billing_headers())


# A dialect whose endpoint dispatches on a method ----------------------------------------


@dataclass(frozen=True, slots=True)
class Streamed:
    """An operation's answer as a series of values, each sent as one SSE frame; closed
    when the stream ends or its client leaves."""

    values: AsyncGenerator[object, None]


Answer = object
"""What an operation answers: a ``Streamed`` series, or one value (a JSON-able object)."""


class Opened(Protocol):
    """A call an operation prepared: the door opens ``invocation``, then ``answer``s."""

    @property
    def invocation(self) -> AgentInvocation: ...

    async def answer(self, call: Call) -> Answer:
        """Answer with the open ``call``, and close it, or hand it to a tracked task that
        will (a run detached from the request, which outlives it)."""
        ...


@dataclass(frozen=True, slots=True)
class Reads(Generic[P_contra]):
    """An operation that opens no upstream call (it reads or changes stored state)."""

    run: Callable[[web.Request, P_contra], Awaitable[Answer]]


@dataclass(frozen=True, slots=True)
class Opens(Generic[P_contra]):
    """An operation that opens a call: ``prepare`` says which, the door opens it."""

    prepare: Callable[[web.Request, P_contra], Awaitable[Opened]]


Method = Reads[P] | Opens[P]


def method_door(dialect: Methods[P], methods: Mapping[str, Method[P]]) -> Door[P]:
    """The door of a dialect whose one endpoint carries ``methods`` (name -> operation)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        limits = request.app[GATEWAY].config.limits
        parsed: P | None = None
        try:
            parsed = dialect.parse(*await read_parse_input(request, limits))
            operation = methods[dialect.method(parsed)]
            if isinstance(operation, Opens):
                opened = await operation.prepare(request, parsed)
                gateway = request.app[GATEWAY]
                call = await gateway.open(
                    opened.invocation, request[API_KEY], request[REQUEST_ID], budget(request)
                )
                answer = await opened.answer(call)
            else:
                answer = await operation.run(request, parsed)
        except GatewayError as exc:
            failure = dialect.failure(parsed, exc)
            if failure is None:
                raise  # the HTTP request's own error: the middleware answers it
            request[ERROR] = exc  # the status the metrics and the access log record
            status, body = failure
            return web.Response(
                body=body, status=status, content_type="application/json", headers=exc.headers
            )
        if isinstance(answer, Streamed):
            return await send_sse(request, _method_frames(dialect, parsed, answer.values))
        return web.Response(body=dialect.result(parsed, answer), content_type="application/json")

    return Door(dialect, handle)


async def _method_frames(
    dialect: Methods[P], parsed: P, values: AsyncGenerator[object, None]
) -> AsyncIterator[bytes]:
    # Closed with the frames: a run held by its request stops as soon as its client leaves.
    async with aclosing(values):
        async for value in values:
            yield dialect.frame(parsed, value)
