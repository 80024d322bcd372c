"""``/v1/responses``: the Open Responses front door, with stored responses over any backend.

The gateway keeps the state backends lack: with ``store`` (the default) a
response and the context that produced it are kept in Redis, so that
``previous_response_id`` and ``item_reference`` work over every backend, even
one that only speaks Chat Completions.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from gateway import sse
from gateway.dialects.responses_items import ItemReference, item_json, parse_item
from gateway.dialects.responses_parse import ResponsesRequest, parse_responses_request
from gateway.dialects.responses_render import ResponseBuilder, frames
from gateway.errors import NotFound
from gateway.invocation import AgentInvocation, InputItem
from gateway.pipeline import Call, Gateway
from gateway.server.body import json_response, read_json
from gateway.server.keys import GATEWAY, REQUEST_ID
from gateway.server.streaming import send_sse
from gateway.store import ApiKey
from gateway.store.responses import StoredResponse


async def create_response(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    key = await gateway.auth.authenticate(request.headers.get("Authorization"))
    body = await read_json(request, gateway.config.limits.max_body_bytes)
    req = parse_responses_request(body)
    invocation = await _with_context(gateway, key, req)
    async with await gateway.open(invocation, key, request[REQUEST_ID]) as call:
        builder = ResponseBuilder(
            f"resp_{call.ctx.charge_id}",
            invocation.agent,
            dict(req.echo),
            previous_response_id=req.previous_response_id,
            store=req.store,
            stream=invocation.stream,
        )
        if invocation.stream:
            return await send_sse(request, _stream(gateway, key, req, invocation, builder, call))
        async for event in call:
            builder.feed(event)
        await _save(gateway, key, req, invocation, builder)
        if builder.failure is not None:
            raise builder.failure
        return json_response(builder.response)


async def _stream(
    gateway: Gateway,
    key: ApiKey,
    req: ResponsesRequest,
    invocation: AgentInvocation,
    builder: ResponseBuilder,
    call: Call,
) -> AsyncIterator[bytes]:
    yield frames(builder.start())
    async for event in call:
        out = builder.feed(event)
        if builder.finished:  # stored before the client hears it is done, so it can chain at once
            await _save(gateway, key, req, invocation, builder)
        if out:
            yield frames(out)
    yield sse.DONE


async def _save(
    gateway: Gateway,
    key: ApiKey,
    req: ResponsesRequest,
    invocation: AgentInvocation,
    builder: ResponseBuilder,
) -> None:
    if not req.store:
        return
    stored = StoredResponse(builder.response, [item_json(i) for i in invocation.input])
    # A client that leaves now must not cut the write short.
    await asyncio.shield(gateway.tasks.spawn(gateway.responses.save(key.id, stored)))


async def _with_context(gateway: Gateway, key: ApiKey, req: ResponsesRequest) -> AgentInvocation:
    context: list[InputItem] = []
    if req.previous_response_id is not None:
        previous = await _load(gateway, key, req.previous_response_id, "previous_response_id")
        context = _items(previous.input, "previous_response") + _items(
            previous.response["output"], "previous_response"
        )
    referenced: dict[str, InputItem] = {}
    for i, item in enumerate(req.items):
        if isinstance(item, ItemReference) and item.id not in referenced:
            referenced[item.id] = await _referenced_item(gateway, key, item.id, f"input[{i}]")
    return req.invocation_with(context, referenced)


async def _referenced_item(gateway: Gateway, key: ApiKey, item_id: str, param: str) -> InputItem:
    """An output item of a stored response; its id names the response (``msg_<hex>_<n>``)."""
    _, _, rest = item_id.partition("_")
    response_hex = rest.rpartition("_")[0]
    stored = await gateway.responses.load(key.id, f"resp_{response_hex}") if response_hex else None
    for raw in stored.response["output"] if stored else ():
        if raw.get("id") == item_id:
            found = parse_item(raw, param)
            if not isinstance(found, ItemReference):
                return found
    raise NotFound(f"Item with id '{item_id}' not found.", param=param)


def _items(raw: list[dict[str, object]], path: str) -> list[InputItem]:
    items = [parse_item(item, f"{path}[{i}]") for i, item in enumerate(raw)]
    return [i for i in items if not isinstance(i, ItemReference)]


async def _load(gateway: Gateway, key: ApiKey, response_id: str, param: str) -> StoredResponse:
    stored = await gateway.responses.load(key.id, response_id)
    if stored is None:
        raise NotFound(f"Response with id '{response_id}' not found.", param=param)
    return stored


async def get_response(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    key = await gateway.auth.authenticate(request.headers.get("Authorization"))
    stored = await _load(gateway, key, request.match_info["response_id"], "response_id")
    return json_response(stored.response)


async def delete_response(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    key = await gateway.auth.authenticate(request.headers.get("Authorization"))
    response_id = request.match_info["response_id"]
    if not await gateway.responses.delete(key.id, response_id):
        raise NotFound(f"Response with id '{response_id}' not found.", param="response_id")
    return json_response({"id": response_id, "object": "response.deleted", "deleted": True})
