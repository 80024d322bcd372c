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
import dataclasses

from aiohttp import web

from gateway.conversation import runs
from gateway.conversation.context import Saver, load, stored_context, with_context
from gateway.dialects.responses import RESPONSES
from gateway.dialects.responses_parse import ResponsesRequest
from gateway.dialects.responses_render import ResponseBuilder
from gateway.errors import NotFound
from gateway.invocation import AgentInvocation
from gateway.pipeline import Call, Gateway
from gateway.server.body import json_response
from gateway.server.door import send_folded, send_stream
from gateway.server.keys import API_KEY, GATEWAY
from gateway.server.streaming import send_sse
from gateway.store import ApiKey
from gateway.store.policy import StoragePolicy
from gateway.wire.fields import invalid


class _Conversation:
    """The stored context in, and the answer kept (``Saver``) or run in the background."""

    async def invocation(
        self, gateway: Gateway, key: ApiKey, parsed: ResponsesRequest
    ) -> AgentInvocation:
        return await with_context(gateway, key, parsed)

    async def answer(
        self,
        request: web.Request,
        parsed: ResponsesRequest,
        invocation: AgentInvocation,
        call: Call,
    ) -> web.StreamResponse:
        gateway = request.app[GATEWAY]
        key = request[API_KEY]
        policy = gateway.storage(invocation.agent)
        if not policy.allowed:  # served, and answered with store: false
            if parsed.background:  # storage turned off by a reload since ``invocation``
                await call.aclose()
                raise policy.refusal("background", "a background response is kept")
            parsed = dataclasses.replace(parsed, store=False)
        builder = RESPONSES.builder(parsed, call.ctx, gateway.config, stream=invocation.stream)
        if parsed.background:
            return await _background(request, gateway, key, call, builder, invocation, policy)
        keep = Saver(gateway, key, invocation, builder, policy).save if parsed.store else None
        if invocation.stream:
            async with call:
                return await send_stream(request, call, builder, keep)
        async with call:
            async for batch in call:
                builder.fold(batch)
        if keep is not None:
            await keep()
        return send_folded(call, builder)


CONVERSATION = _Conversation()


async def _background(
    request: web.Request,
    gateway: Gateway,
    key: ApiKey,
    call: Call,
    builder: ResponseBuilder,
    invocation: AgentInvocation,
    policy: StoragePolicy,
) -> web.StreamResponse:
    """Start the run in a tracked task; answer with the response in progress, or with
    its events as they come (read back from Redis, so a client that leaves stops nothing)."""
    response_id = builder.response_id
    context = stored_context(invocation, response_id)
    run = runs.Run(
        gateway,
        key,
        call,
        builder,
        context,
        streamed=invocation.stream,
        retention_ms=policy.retention_ms,
    )
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
