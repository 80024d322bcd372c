"""The admin API under ``/admin``: keys, limits, balances and the ledger.

A sub-application, mounted only when ``admin.token_env`` is configured. Every
request must carry ``Authorization: Bearer <admin token>``; the token is compared
in constant time (SHA-256 digests through ``hmac.compare_digest``, so not even its
length leaks) and never logged. Bodies are JSON; answers are what the matching
``gateway ... --json`` command prints. Errors go through the app's error middleware.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Mapping

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.errors import AuthenticationFailed, GatewayError, InvalidRequest
from gateway.pipeline import Gateway
from gateway.server.body import json_response, read_json
from gateway.server.keys import GATEWAY, REQUEST_ID
from gateway.store import ledger_export
from gateway.store.records import Limits

log = logging.getLogger(__name__)

ADMIN_TOKEN_DIGEST = web.AppKey("admin_token_digest", bytes)
MAX_BODY_BYTES = 64 * 1024
MAX_TEXT = 1000
_CONTENT_TYPES = {
    "json": "application/json",
    "jsonl": "application/x-ndjson",
    "csv": "text/csv",
}
_LIMIT_FIELDS = ("rpm", "tpm", "max_concurrent", "daily_budget", "monthly_budget")


def create_admin_app(token: str) -> web.Application:
    """The admin sub-application; mount it with ``app.add_subapp("/admin", ...)``."""
    if not token:
        raise ValueError("the admin token is empty")
    admin = web.Application(middlewares=[require_token])
    admin[ADMIN_TOKEN_DIGEST] = _digest(token)
    admin.router.add_get("/keys", list_keys)
    admin.router.add_post("/keys", create_key)
    admin.router.add_get("/keys/{id}", show_key)
    admin.router.add_post("/keys/{id}/revoke", revoke_key)
    admin.router.add_put("/keys/{id}/limits", set_limits)
    admin.router.add_get("/keys/{id}/balance", balance)
    admin.router.add_post("/keys/{id}/credit", credit)
    admin.router.add_get("/keys/{id}/ledger", ledger)
    return admin


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@web.middleware
async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    expected = request.app[ADMIN_TOKEN_DIGEST]
    ok = hmac.compare_digest(_digest(given.strip()), expected)
    if scheme.lower() != "bearer" or not given.strip() or not ok:
        raise AuthenticationFailed(
            "the admin API needs 'Authorization: Bearer <admin token>'",
            code="invalid_admin_token",
            headers={"WWW-Authenticate": 'Bearer realm="gateway-admin"'},
        )
    return await handler(request)


def _gateway(request: web.Request) -> Gateway:
    return request.config_dict[GATEWAY]


# Handlers


async def list_keys(request: web.Request) -> web.Response:
    keys = await _gateway(request).store.list_keys()
    return json_response([k.to_json() for k in keys])


async def create_key(request: web.Request) -> web.Response:
    body = await _object(request, {"name", "balance", "agents", "expires_in_seconds", "limits"})
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_TEXT:
        raise InvalidRequest("name must be a non-empty string", param="name")
    balance = _int(body.get("balance", 0), "balance", minimum=0)
    agents = body.get("agents", [])
    if not isinstance(agents, list) or not all(isinstance(a, str) and a for a in agents):
        raise InvalidRequest("agents must be a list of agent ids", param="agents")
    expires_at = None
    if (expires_in := body.get("expires_in_seconds")) is not None:
        seconds = _number(expires_in)
        if seconds is None or seconds <= 0:
            raise InvalidRequest(
                "expires_in_seconds must be a positive number", param="expires_in_seconds"
            )
        expires_at = time.time() + seconds
    limits = _limits(body.get("limits", {}), "limits")
    key, secret = await _gateway(request).store.create_key(
        name, balance=balance, agents=tuple(agents), expires_at=expires_at, limits=limits
    )
    return json_response({**key.to_json(), "key": secret, "balance": balance}, status=201)


async def show_key(request: web.Request) -> web.Response:
    store = _gateway(request).store
    key = await store.get_key(request.match_info["id"])
    balance_, held = await store.balance(key.id), await store.held(key.id)
    return json_response({**key.to_json(), "balance": balance_, "held": held})


async def revoke_key(request: web.Request) -> web.Response:
    gateway = _gateway(request)
    key = await gateway.store.revoke_key(request.match_info["id"])
    gateway.auth.forget(key.id)  # this process refuses it at once; others within cache_ttl
    return json_response(key.to_json())


async def set_limits(request: web.Request) -> web.Response:
    limits = _limits(await _object(request, set(_LIMIT_FIELDS)), None)
    key = await _gateway(request).store.set_limits(request.match_info["id"], limits)
    return json_response(key.to_json())


async def balance(request: web.Request) -> web.Response:
    store = _gateway(request).store
    key = await store.get_key(request.match_info["id"])
    balance_, held = await store.balance(key.id), await store.held(key.id)
    return json_response(
        {"id": key.id, "balance": balance_, "held": held, "available": balance_ - held}
    )


async def credit(request: web.Request) -> web.Response:
    body = await _object(request, {"credits", "note"})
    if "credits" not in body:
        raise InvalidRequest("credits is required", param="credits")
    credits = _int(body["credits"], "credits")
    if credits == 0:
        raise InvalidRequest("credits must not be 0", param="credits")
    note = body.get("note", "")
    if not isinstance(note, str) or len(note) > MAX_TEXT:
        raise InvalidRequest(
            f"note must be a string of at most {MAX_TEXT} characters", param="note"
        )
    key_id = request.match_info["id"]
    new_balance = await _gateway(request).store.credit(key_id, credits, note=note)
    return json_response({"id": key_id, "balance": new_balance})


async def ledger(request: web.Request) -> web.StreamResponse:
    """The key's ledger, streamed page by page as ``json``, ``jsonl`` or ``csv``."""
    store = _gateway(request).store
    fmt = request.query.get("format", "json")
    if fmt not in ledger_export.FORMATS:
        raise InvalidRequest(
            f"format must be one of {', '.join(ledger_export.FORMATS)}", param="format"
        )
    query = _ledger_query(request.query)
    key = await store.get_key(request.match_info["id"])
    chunks = ledger_export.render(ledger_export.entries(store, key.id, query), fmt)
    first = await anext(chunks, "")  # a store failure before any byte is still a clean 503
    response = web.StreamResponse(
        headers={
            "Content-Type": _CONTENT_TYPES[fmt] + "; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Request-Id": request[REQUEST_ID],
        }
    )
    if fmt == "csv":
        response.headers["Content-Disposition"] = f'attachment; filename="ledger-{key.id}.csv"'
    await response.prepare(request)
    try:
        await response.write(first.encode())
        async for chunk in chunks:
            await response.write(chunk.encode())
    except GatewayError:
        # Headers are gone: cut the connection so the client sees a truncated body,
        # never an export that looks complete.
        log.warning("ledger export of request %s broke off", request[REQUEST_ID])
        if request.transport is not None:
            request.transport.abort()
        return response
    except ConnectionResetError:
        log.debug("client went away during request %s", request[REQUEST_ID])
        return response
    await response.write_eof()
    return response


# Input checks: each failure is a 400 naming the parameter


async def _object(request: web.Request, allowed: set[str]) -> dict[str, object]:
    body = await read_json(request, MAX_BODY_BYTES)
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    for name in body:
        if name not in allowed:
            raise InvalidRequest(f"unknown field {name!r}", param=name)
    return body


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _int(value: object, param: str, *, minimum: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidRequest(f"{param} must be a whole number", param=param)
    if minimum is not None and value < minimum:
        raise InvalidRequest(f"{param} must be at least {minimum}", param=param)
    return value


def _limits(value: object, prefix: str | None) -> Limits:
    def where(name: str) -> str:
        return f"{prefix}.{name}" if prefix else name

    if not isinstance(value, dict):
        raise InvalidRequest("limits must be an object", param=prefix)
    for name in value:
        if name not in _LIMIT_FIELDS:
            raise InvalidRequest(f"unknown limit {name!r}", param=where(name))
    counts = [_int(value.get(name, 0), where(name), minimum=0) for name in _LIMIT_FIELDS]
    return Limits(*counts)


def _ledger_query(params: Mapping[str, str]) -> ledger_export.LedgerQuery:
    def time_param(name: str) -> float | None:
        raw = params.get(name)
        if raw is None or raw == "":
            return None
        try:
            return ledger_export.parse_time(raw)
        except ValueError as exc:
            raise InvalidRequest(str(exc), param=name) from None

    kind = params.get("kind") or None
    if kind is not None and kind not in ledger_export.KINDS:
        raise InvalidRequest(f"kind must be one of {', '.join(ledger_export.KINDS)}", param="kind")
    limit = None
    if raw_limit := params.get("limit"):
        if not raw_limit.isdigit() or int(raw_limit) < 1:
            raise InvalidRequest("limit must be a positive whole number", param="limit")
        limit = int(raw_limit)
    return ledger_export.LedgerQuery(
        agent=params.get("agent") or None,
        kind=kind,
        since=time_param("since"),
        until=time_param("until"),
        limit=limit,
    )
