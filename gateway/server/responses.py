"""``/v1/responses``: the Open Responses front door, with stored responses over any backend.

The gateway keeps the state backends lack: with ``store`` (the default) a
response and the context that produced it are kept in Redis, so that
``previous_response_id`` and ``item_reference`` work over every backend, even
one that only speaks Chat Completions. ``background`` runs the call in a
tracked task that no client holds (``gateway.server.background``): it returns
at once, or with ``stream`` streams the events, which any client can resume
(``GET ...?stream=true&starting_after=N``) or cancel (``POST .../cancel``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, cast

from aiohttp import web

from gateway import sse
from gateway.dialects.responses_parse import ResponsesRequest, parse_responses_request
from gateway.dialects.responses_render import ReasoningEvents, ResponseBuilder, frames
from gateway.errors import NotFound
from gateway.invocation import AgentInvocation, InputItem
from gateway.pipeline import Call, Gateway
from gateway.server import background
from gateway.server.body import budget, json_response, read_request
from gateway.server.keys import API_KEY, GATEWAY, REQUEST_ID
from gateway.server.streaming import send_sse
from gateway.store import ApiKey
from gateway.store.responses import StoredResponse
from gateway.wire.fields import invalid
from gateway.wire.responses_items import (
    ItemReference,
    item_id,
    item_json,
    parse_item,
    response_of,
)


async def create_response(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    key = request[API_KEY]
    limits = gateway.config.limits
    body = await read_request(request, limits)
    req = parse_responses_request(body, limits)
    if req.background and not req.store:
        raise invalid("store", "a background response must be stored to be retrieved")
    invocation = await _with_context(gateway, key, req)
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
    saver = _Saver(gateway, key, req, invocation, builder)
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
    run = background.Run(gateway, key, call, builder, context, streamed=invocation.stream)
    runs = gateway.response_runs
    async with contextlib.AsyncExitStack() as stack:
        try:
            if invocation.stream:  # a slot to follow it, before it starts
                await stack.enter_async_context(runs.following())
            await run.begin()  # stored in progress, so that GET finds it at once
        except BaseException:
            await call.aclose()
            raise
        gateway.tasks.spawn(run.main(), name=f"background {response_id}")
        if not invocation.stream:
            return json_response(builder.response, headers=call.hold.headers())
        first = await runs.read(key.id, response_id, -1, block=False)
        return await background.follow(
            request, gateway, key, response_id, -1, first, call.hold.headers()
        )


async def _run(call: Call, builder: ResponseBuilder, saver: _Saver) -> None:
    async with call:
        async for batch in call:
            for event in batch:
                builder.feed(event)
    await saver.save()


async def _stream(call: Call, builder: ResponseBuilder, saver: _Saver) -> AsyncIterator[bytes]:
    yield frames(builder.start())
    async for batch in call:
        out = [json for event in batch for json in builder.feed(event)]
        if builder.finished:  # stored before the client hears it is done, so it can chain at once
            await saver.save()
        if out:
            yield frames(out)
    yield sse.DONE


class _Saver:
    """Writes a response and its context to the store, if the request asked for it."""

    def __init__(
        self,
        gateway: Gateway,
        key: ApiKey,
        req: ResponsesRequest,
        invocation: AgentInvocation,
        builder: ResponseBuilder,
    ) -> None:
        self._gateway = gateway
        self._key = key
        self._store = req.store
        self._invocation = invocation
        self._builder = builder
        self._saved = False  # a later save must not bring back a response deleted meanwhile

    async def save(self) -> None:
        if not self._store:
            return
        response_id = self._builder.response_id
        context = stored_context(self._invocation, response_id)
        stored = StoredResponse(self._builder.response, context)
        write = self._gateway.responses.save(self._key.id, stored, update=self._saved)
        self._saved = True
        # A client that leaves now must not cut the write short.
        await asyncio.shield(self._gateway.tasks.spawn(write, name=f"store {response_id}"))


def stored_context(invocation: AgentInvocation, response_id: str) -> list[dict[str, Any]]:
    """The input items of a response's context as stored, each with its id."""
    context = []
    for n, item in enumerate(invocation.input):
        raw = item_json(item)
        raw["id"] = item_id(raw["type"], response_id, f"in{n}")
        context.append(raw)
    return context


async def _with_context(gateway: Gateway, key: ApiKey, req: ResponsesRequest) -> AgentInvocation:
    context: list[InputItem] = []
    if req.previous_response_id is not None:
        previous = await _load(gateway, key, req.previous_response_id, "previous_response_id")
        context = _items(previous.input) + _items(previous.response["output"])
    referenced: dict[str, InputItem] = {}
    for i, item in enumerate(req.items):
        if isinstance(item, ItemReference) and item.id not in referenced:
            referenced[item.id] = await _referenced(gateway, key, item.id, f"input[{i}]")
    return req.invocation_with(context, referenced)


async def _referenced(gateway: Gateway, key: ApiKey, reference: str, param: str) -> InputItem:
    """An input or output item of a stored response, found through its id."""
    response_id = response_of(reference)
    stored = await gateway.responses.load(key.id, response_id) if response_id else None
    if stored is not None:
        for raw in (*stored.input, *stored.response["output"]):
            if raw.get("id") == reference:
                found = parse_item(raw, param)
                if not isinstance(found, ItemReference):
                    return found
    raise NotFound(f"Item with id '{reference}' not found.", param=param)


def _items(raw: list[dict[str, object]]) -> list[InputItem]:
    items = [parse_item(item, f"stored[{i}]") for i, item in enumerate(raw)]
    return [i for i in items if not isinstance(i, ItemReference)]


async def _load(gateway: Gateway, key: ApiKey, response_id: str, param: str) -> StoredResponse:
    stored = await gateway.responses.load(key.id, response_id)
    if stored is None:
        raise NotFound(f"Response with id '{response_id}' not found.", param=param)
    return stored


async def get_response(request: web.Request) -> web.StreamResponse:
    """The stored object; with ``stream=true`` its events after ``starting_after``, then live."""
    gateway = request.app[GATEWAY]
    key = request[API_KEY]
    response_id = request.match_info["response_id"]
    stored = await _load(gateway, key, response_id, "response_id")
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
    return await background.stream(request, gateway, key, response_id, start)


async def cancel_response(request: web.Request) -> web.Response:
    """``POST .../responses/{id}/cancel``: stop a background response in progress."""
    gateway = request.app[GATEWAY]
    key = request[API_KEY]
    return await background.cancel(gateway, key, request.match_info["response_id"])


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
    stored = await _load(gateway, key, request.match_info["response_id"], "response_id")
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
