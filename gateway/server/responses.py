"""``/v1/responses``: the Open Responses front door, with stored responses over any backend.

The conversation state backends lack is the gateway's own (``gateway.conversation``):
with ``store`` (the default) a response and its context are kept, so that
``previous_response_id`` and ``item_reference`` work over every backend.
``background`` runs the call in a tracked task that no client holds
(``gateway.conversation.runs``): it returns at once, or with ``stream`` streams
the events, which any client can resume (``GET ...?stream=true&starting_after=N``)
or cancel (``POST .../cancel``). This module is the HTTP side of it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import cast

from aiohttp import web

from gateway import sse
from gateway.conversation import runs
from gateway.conversation.context import Saver, load, stored_context, with_context
from gateway.dialects.responses_parse import parse_responses_request
from gateway.dialects.responses_render import ReasoningEvents, ResponseBuilder, frames
from gateway.errors import NotFound
from gateway.invocation import AgentInvocation
from gateway.pipeline import Call, Gateway
from gateway.server.body import budget, json_response, read_request
from gateway.server.keys import API_KEY, GATEWAY, REQUEST_ID
from gateway.server.streaming import send_sse
from gateway.store import ApiKey
from gateway.wire.fields import invalid


async def create_response(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    key = request[API_KEY]
    limits = gateway.config.limits
    body = await read_request(request, limits)
    req = parse_responses_request(body, limits)
    if req.background and not req.store:
        raise invalid("store", "a background response must be stored to be retrieved")
    invocation = await with_context(gateway, key, req)
    call = await gateway.open(invocation, key, request[REQUEST_ID], budget(request))
    reasoning = (
        call.ctx.route.responses.reasoning_events or gateway.config.responses.reasoning_events
    )
    builder = ResponseBuilder(
        f"resp_{call.ctx.charge_id}",
        invocation.agent,
        dict(req.echo),
        previous_response_id=req.previous_response_id,
        store=req.store,
        background=req.background,
        stream=invocation.stream,
        reasoning_events=cast(ReasoningEvents, reasoning),  # checked when the config was read
    )
    if req.background:
        return await _background(request, gateway, key, call, builder, invocation)
    saver = Saver(gateway, key, req.store, invocation, builder)
    if invocation.stream:
        async with call:
            return await send_sse(request, _stream(call, builder, saver), call.hold.headers())
    await _run(call, builder, saver)
    if builder.failure is not None:
        raise builder.failure
    return json_response(
        builder.response, headers=call.hold.headers() | call.hold.billing_headers()
    )


async def _background(
    request: web.Request,
    gateway: Gateway,
    key: ApiKey,
    call: Call,
    builder: ResponseBuilder,
    invocation: AgentInvocation,
) -> web.StreamResponse:
    """Start the run in a tracked task; answer with the response in progress, or with
    its events as they come (read back from Redis, so a client that leaves stops nothing)."""
    response_id = builder.response_id
    context = stored_context(invocation, response_id)
    run = runs.Run(gateway, key, call, builder, context, streamed=invocation.stream)
    async with contextlib.AsyncExitStack() as stack:
        try:
            if invocation.stream:  # a slot to follow it, before it starts
                await stack.enter_async_context(gateway.response_runs.following())
            await run.begin()  # stored in progress, so that GET finds it at once
        except BaseException:
            await call.aclose()
            raise
        gateway.tasks.spawn(run.main(), name=f"background {response_id}")
        if not invocation.stream:
            return json_response(builder.response, headers=call.hold.headers())
        first = await gateway.response_runs.read(key.id, response_id, -1, block=False)
        following = runs.follow(gateway, key, response_id, -1, first)
        return await send_sse(request, following, call.hold.headers())


async def _run(call: Call, builder: ResponseBuilder, saver: Saver) -> None:
    async with call:
        async for batch in call:
            for event in batch:
                builder.feed(event)
    await saver.save()


async def _stream(call: Call, builder: ResponseBuilder, saver: Saver) -> AsyncIterator[bytes]:
    yield frames(builder.start())
    async for batch in call:
        out = [json for event in batch for json in builder.feed(event)]
        if builder.finished:  # stored before the client hears it is done, so it can chain at once
            await saver.save()
        if out:
            yield frames(out)
    yield sse.DONE


async def get_response(request: web.Request) -> web.StreamResponse:
    """The stored object; with ``stream=true`` its events after ``starting_after``, then live."""
    gateway = request.app[GATEWAY]
    key = request[API_KEY]
    response_id = request.match_info["response_id"]
    stored = await load(gateway, key, response_id, "response_id")
    query = request.query
    streamed = query.get("stream", "false")
    if streamed not in ("true", "false"):
        raise invalid("stream", "must be 'true' or 'false'")
    after = query.get("starting_after")
    if streamed == "false":
        if after is not None:
            raise invalid("starting_after", "applies only with 'stream=true'")
        return json_response(stored.response)
    start = -1
    if after is not None:
        if not (after.isascii() and after.isdigit()) or len(after) > 18:
            raise invalid("starting_after", "must be a sequence number (an integer >= 0)")
        start = int(after)
    await runs.resumable(gateway, key, response_id)
    async with gateway.response_runs.following():
        first = await runs.events_after(gateway, key, response_id, start)
        return await send_sse(request, runs.follow(gateway, key, response_id, start, first))


async def cancel_response(request: web.Request) -> web.Response:
    """``POST .../responses/{id}/cancel``: stop a background response in progress."""
    gateway = request.app[GATEWAY]
    key = request[API_KEY]
    return json_response(await runs.cancel(gateway, key, request.match_info["response_id"]))


async def delete_response(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    key = request[API_KEY]
    response_id = request.match_info["response_id"]
    if not await gateway.responses.delete(key.id, response_id):
        raise NotFound(f"Response with id '{response_id}' not found.", param="response_id")
    await gateway.response_runs.delete(key.id, response_id)  # a run still going stops
    return json_response({"id": response_id, "object": "response.deleted", "deleted": True})


async def list_input_items(request: web.Request) -> web.Response:
    """``GET .../responses/{id}/input_items``: ``limit`` (1-100, 20), ``order``, ``after``."""
    gateway = request.app[GATEWAY]
    key = request[API_KEY]
    stored = await load(gateway, key, request.match_info["response_id"], "response_id")
    query = request.query
    try:
        limit = int(query.get("limit", "20"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        raise invalid("limit", "must be an integer from 1 to 100")
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise invalid("order", "must be 'asc' or 'desc'")
    items = stored.input if order == "asc" else stored.input[::-1]
    after = query.get("after")
    if after is not None:
        ids = [item.get("id") for item in items]
        if after not in ids:
            raise NotFound(f"Item with id '{after}' not found.", param="after")
        items = items[ids.index(after) + 1 :]
    page = items[:limit]
    return json_response(
        {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(items) > limit,
        }
    )
