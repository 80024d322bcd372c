"""Stored responses and their context: ``previous_response_id`` and ``item_reference``
resolved from the store, and a response written back with the context that produced it.

With ``store`` (the default) a response and its context are kept in Redis
(``gateway.store.responses``), so that a later request can continue it over any
backend, even one that only speaks Chat Completions. The agent's
``StoragePolicy`` comes first: with ``store: never`` nothing is kept, a request
that needs something stored is a 400, and what was stored before reads as absent.
"""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.dialects.responses_parse import ResponsesRequest
from gateway.dialects.responses_render import ResponseBuilder
from gateway.errors import NotFound
from gateway.invocation import AgentInvocation, InputItem
from gateway.pipeline import Gateway
from gateway.store import ApiKey
from gateway.store.policy import StoragePolicy
from gateway.store.responses import StoredResponse
from gateway.wire.responses_items import ItemReference, item_id, item_json, parse_item, response_of


async def with_context(gateway: Gateway, key: ApiKey, req: ResponsesRequest) -> AgentInvocation:
    """``req``'s invocation with the stored context it names put in; a 400 for a
    request that needs storage when its agent's is off."""
    policy = gateway.storage(req.invocation.agent)
    if not policy.allowed:
        refuse(policy, req)
    context: list[InputItem] = []
    if req.previous_response_id is not None:
        previous = await load(gateway, key, req.previous_response_id, "previous_response_id")
        context = _items(previous.input) + _items(previous.response["output"])
    referenced: dict[str, InputItem] = {}
    for i, item in enumerate(req.items):
        if isinstance(item, ItemReference) and item.id not in referenced:
            referenced[item.id] = await _referenced(gateway, key, item.id, f"input[{i}]")
    return req.invocation_with(context, referenced)


def refuse(policy: StoragePolicy, req: ResponsesRequest) -> None:
    """The 400 for what ``req`` asks that needs storage, under a policy that stores nothing
    (``store: true`` alone is served, answered with ``store: false``)."""
    if req.previous_response_id is not None:
        raise policy.refusal("previous_response_id", "it continues a stored response")
    if req.background:
        raise policy.refusal("background", "a background response is kept to be read back")
    for i, item in enumerate(req.items):
        if isinstance(item, ItemReference):
            raise policy.refusal(f"input[{i}]", "an item_reference names a stored item")


async def _referenced(gateway: Gateway, key: ApiKey, reference: str, param: str) -> InputItem:
    """An input or output item of a stored response, found through its id."""
    response_id = response_of(reference)
    stored = await _readable(gateway, key, response_id) if response_id else None
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


async def load(gateway: Gateway, key: ApiKey, response_id: str, param: str) -> StoredResponse:
    """The stored response, or a 404 naming ``param`` (saying so when storage is off)."""
    stored = await gateway.responses.load(key.id, response_id)
    what = f"Response with id '{response_id}'"
    if stored is None:
        if gateway.config.responses.store == "never":
            raise NotFound(
                f"{what} not found: storage of responses is off (responses.store: never).",
                param=param,
                code="storage_disabled",
            )
        raise NotFound(f"{what} not found.", param=param)
    policy = gateway.storage(stored.response["model"])
    if not policy.allowed:  # stored before the policy changed: it is not read back
        raise policy.not_stored(what, param)
    return stored


async def _readable(gateway: Gateway, key: ApiKey, response_id: str) -> StoredResponse | None:
    stored = await gateway.responses.load(key.id, response_id)
    if stored is None or not gateway.storage(stored.response["model"]).allowed:
        return None
    return stored


def stored_context(invocation: AgentInvocation, response_id: str) -> list[dict[str, Any]]:
    """The input items of a response's context as stored, each with its id."""
    context = []
    for n, item in enumerate(invocation.input):
        raw = item_json(item)
        raw["id"] = item_id(raw["type"], response_id, f"in{n}")
        context.append(raw)
    return context


class Saver:
    """Writes a response and its context to the store (for a request with ``store``)."""

    def __init__(
        self,
        gateway: Gateway,
        key: ApiKey,
        invocation: AgentInvocation,
        builder: ResponseBuilder,
        policy: StoragePolicy,
    ) -> None:
        self._gateway = gateway
        self._key = key
        self._invocation = invocation
        self._builder = builder
        self._retention_ms = policy.retention_ms
        self._saved = False  # a later save must not bring back a response deleted meanwhile

    async def save(self) -> None:
        response_id = self._builder.response_id
        context = stored_context(self._invocation, response_id)
        stored = StoredResponse(self._builder.response, context)
        write = self._gateway.responses.save(
            self._key.id, stored, self._retention_ms, update=self._saved
        )
        self._saved = True
        # A client that leaves now must not cut the write short.
        await asyncio.shield(self._gateway.tasks.spawn(write, name=f"store {response_id}"))
