"""The admin API's money handlers: a key's balance, credits added, and its ledger."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from gateway.errors import GatewayError, InvalidRequest
from gateway.server.admin.request import (
    actor,
    credit_body,
    gateway_of,
    ledger_query,
)
from gateway.server.body import json_response
from gateway.server.keys import REQUEST_ID
from gateway.store import ledger_export
from gateway.store.records import LedgerEntry
from gateway.store.teams import Teams, is_team

log = logging.getLogger("gateway.server.admin")

_CONTENT_TYPES = {
    "json": "application/json",
    "jsonl": "application/x-ndjson",
    "csv": "text/csv",
}


async def balance(request: web.Request) -> web.Response:
    store = gateway_of(request).store
    key = await store.get_key(request.match_info["id"])
    balance_, held = await store.balance(key.id), await store.held(key.id)
    return json_response(
        {"id": key.id, "balance": balance_, "held": held, "available": balance_ - held}
    )


async def credit(request: web.Request) -> web.Response:
    credits, text = await credit_body(request)
    key_id = request.match_info["id"]
    new_balance = await gateway_of(request).store.credit(
        key_id, credits, note=text, actor=actor(request)
    )
    return json_response({"id": key_id, "balance": new_balance})


async def ledger(request: web.Request) -> web.StreamResponse:
    """The ledger of a key (its own, and its entries in the ledger of each team it is or
    has been in, oldest first) or of a team (``team_...``), streamed page by page as
    ``json``, ``jsonl`` or ``csv``."""
    store = gateway_of(request).store
    fmt = request.query.get("format", "json")
    if fmt not in ledger_export.FORMATS:
        raise InvalidRequest(
            f"format must be one of {', '.join(ledger_export.FORMATS)}", param="format"
        )
    query = ledger_query(request.query)
    name = request.match_info["id"]  # exists, so a safe file name, once checked
    entries: AsyncIterator[LedgerEntry]
    if is_team(name):
        await Teams(store).get(name)
        entries = ledger_export.entries(store, name, query)
    else:  # its own ledger and its entries in every team's it has been in, as usage
        entries = ledger_export.key_entries(store, await store.get_key(name), query)
    chunks = ledger_export.render(entries, fmt)
    first = await anext(chunks, "")  # a store failure before any byte is still a clean 503
    response = web.StreamResponse(
        headers={
            "Content-Type": _CONTENT_TYPES[fmt] + "; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Request-Id": request[REQUEST_ID],
        }
    )
    if fmt == "csv":
        response.headers["Content-Disposition"] = f'attachment; filename="ledger-{name}.csv"'
    await response.prepare(request)
    try:
        await response.write(first.encode())
        async for chunk in chunks:
            await response.write(chunk.encode())
    except ConnectionResetError:
        log.debug("client went away during request %s", request[REQUEST_ID])
        return response
    except Exception as exc:
        # Headers are gone: cut the connection so the client sees a truncated body, never
        # an export that looks complete (nor a second response inside this one's body).
        unexpected = not isinstance(exc, GatewayError)
        log.warning(
            "ledger export of request %s broke off", request[REQUEST_ID], exc_info=unexpected
        )
        if request.transport is not None:
            request.transport.abort()
        return response
    await response.write_eof()
    return response
