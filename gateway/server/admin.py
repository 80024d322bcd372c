"""The admin API under ``/admin``: keys, limits, balances, the ledger and the audit log.

Absent unless ``admin.token_env`` is configured. Then it is either a sub-application
of the public one (no ``admin.listen``), or served by a listener of its own
(``start_admin_site``), and then only there. Every request must carry
``Authorization: Bearer <admin token>``; the token is compared in constant time
(SHA-256 digests through ``hmac.compare_digest``, so not even its length leaks)
and never logged. Bodies are JSON; answers are what the matching ``gateway ...
--json`` command prints. Errors go through the error middleware. Every change
(create, revoke, rotate, credit, limits) is audited as ``admin-api:<client address>``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import time
from collections.abc import Mapping
from functools import partial

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway import key_rules
from gateway.config import GatewayConfig
from gateway.errors import AuthenticationFailed, ConfigError, GatewayError, InvalidRequest, Problem
from gateway.pipeline import Gateway
from gateway.server import middlewares, openapi
from gateway.server.api import JSON, Operation, Param, Reply, Table, json_reply
from gateway.server.body import json_response, read_json, whole_number
from gateway.server.connection import GatewayRunner
from gateway.server.keys import GATEWAY, REQUEST_ID
from gateway.server.listen import start_site
from gateway.store import ledger_export
from gateway.store.records import LIMIT_FIELDS, KeyLimits
from gateway.store.store import DEFAULT_GRACE_SECONDS

log = logging.getLogger(__name__)

ADMIN_TOKEN_DIGEST = web.AppKey("admin_token_digest", bytes)
MAX_BODY_BYTES = 64 * 1024
MAX_TEXT = key_rules.MAX_TEXT
MAX_GRACE_SECONDS = 90 * 86400
MAX_AUDIT_LIMIT = 10_000
_CONTENT_TYPES = {
    "json": "application/json",
    "jsonl": "application/x-ndjson",
    "csv": "text/csv",
}


ADMIN_PREFIX = "/admin"


def admin_token(config: GatewayConfig) -> str:
    """The admin token from ``admin.token_env``; refuse to start on an empty one."""
    name = config.admin.token_env or ""
    token = os.environ.get(name, "")
    if not token.strip():
        problem = Problem("admin.token_env", f"environment variable {name} is empty", config.source)
        raise ConfigError([problem])
    return token.strip()  # a trailing newline (a token read from a file) is not part of it


def create_admin_app(token: str) -> web.Application:
    """The admin sub-application; mount it with ``app.add_subapp("/admin", ...)``."""
    if not token:
        raise ValueError("the admin token is empty")
    admin = web.Application(middlewares=[require_token])
    admin[ADMIN_TOKEN_DIGEST] = _digest(token)
    for op in ADMIN.operations:  # relative to the mount point
        admin.router.add_route(op.method, op.path, op.handler)
    return admin


def create_admin_site_app(gateway: Gateway, token: str) -> web.Application:
    """The application of the admin listener: ``/admin/...`` and its own ``/openapi.json``."""
    app = web.Application(
        middlewares=[middlewares.request_id, middlewares.errors],
        client_max_size=MAX_BODY_BYTES,
    )
    app[GATEWAY] = gateway
    app[openapi.OPENAPI_DOCUMENT] = openapi.document([ADMIN], title="Agent gateway admin API")
    app.router.add_get("/openapi.json", openapi.serve_document)
    app.add_subapp(ADMIN_PREFIX, create_admin_app(token))
    return app


async def start_admin_site(
    gateway: Gateway, config: GatewayConfig, *, reuse_port: bool = False
) -> web.AppRunner | None:
    """Serve the admin API on ``admin.listen``; ``None`` when it is not configured
    (no token: no admin API at all; no ``listen``: it is mounted on the public app).

    ``reuse_port`` lets several worker processes share the port (each answers from the
    shared store; ``/admin/runtime`` then describes whichever worker answers).
    ``await runner.cleanup()`` at shutdown stops it.
    """
    listen = config.admin.listen
    if not config.admin.token_env or listen is None:
        return None
    runner = GatewayRunner(
        create_admin_site_app(gateway, admin_token(config)),
        handler_cancellation=True,
        access_log=None,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, listen.host, listen.port, reuse_port=reuse_port)
        await start_site(site, listen.host, listen.port, " (admin API)")
    except BaseException:
        await runner.cleanup()
        raise
    log.info("admin API listening on http://%s:%d/admin", listen.host, listen.port)
    return runner


def _digest(token: str) -> bytes:
    # aiohttp decodes header bytes as UTF-8 with surrogateescape, so a header holds lone
    # surrogates for any byte that is not UTF-8 (``Bearer \xff``): encoding the same
    # way gives back the bytes sent, where a plain ``encode()`` raised (a 500).
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


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


def actor(request: web.Request) -> str:
    """Who the audit log names: the client's address, never the token."""
    return f"admin-api:{request.remote or 'unknown'}"


# Handlers


async def list_keys(request: web.Request) -> web.Response:
    keys = await _gateway(request).store.list_keys()
    return json_response([k.to_json() for k in keys])


async def create_key(request: web.Request) -> web.Response:
    body = await _object(
        request, {"name", "balance", "agents", "expires_in_seconds", "limits", "note"}
    )
    name = body.get("name")
    if not isinstance(name, str):
        raise InvalidRequest("name must be a non-empty string", param="name")
    _check("name", key_rules.name(name))
    balance = _int(body.get("balance", 0), "balance")
    _check("balance", key_rules.balance(balance))
    agents = body.get("agents", [])
    if not isinstance(agents, list) or not all(isinstance(a, str) for a in agents):
        raise InvalidRequest("agents must be a list of agent ids", param="agents")
    for i, agent in enumerate(agents):
        _check(f"agents[{i}]", key_rules.agent(agent))
    expires_at = None
    if (expires_in := body.get("expires_in_seconds")) is not None:
        seconds = _number(expires_in)
        if seconds is None:
            raise InvalidRequest("expires_in_seconds must be a number", param="expires_in_seconds")
        _check("expires_in_seconds", key_rules.lifetime(seconds))
        expires_at = time.time() + seconds
    limits = _limits(body.get("limits", {}), "limits")
    gateway = _gateway(request)
    # What the CLI prints on stderr: accepted (routes are edited live), but said.
    unserved = key_rules.unserved(agents, gateway.config.routes)
    key, secret = await gateway.store.create_key(
        name,
        balance=balance,
        agents=tuple(agents),
        expires_at=expires_at,
        limits=limits,
        note=_note(body),
        actor=actor(request),
    )
    reply = {**key.to_json(), "key": secret, "balance": balance}
    if unserved:
        reply["warnings"] = [key_rules.unserved_warning(unserved)]
    return json_response(reply, status=201)


async def rotate_key(request: web.Request) -> web.Response:
    body = await _object(request, {"grace_seconds"}, empty_ok=True)
    grace = body.get("grace_seconds", DEFAULT_GRACE_SECONDS)
    seconds = _number(grace)
    if seconds is None or seconds < 0 or seconds > MAX_GRACE_SECONDS:
        raise InvalidRequest(
            f"grace_seconds must be a number from 0 to {MAX_GRACE_SECONDS}", param="grace_seconds"
        )
    gateway = _gateway(request)
    key, secret = await gateway.store.rotate_key(
        request.match_info["id"], grace_seconds=seconds, actor=actor(request)
    )
    gateway.auth.forget(key.id)  # this process reads the new record at once
    return json_response({**key.to_json(), "key": secret})


async def runtime(request: web.Request) -> web.Response:
    """What a soak test watches for leaks besides memory and descriptors."""
    gateway = _gateway(request)
    return json_response(
        {"asyncio_tasks": len(asyncio.all_tasks()), "active_calls": gateway.active_calls}
    )


async def audit(request: web.Request) -> web.Response:
    limit = whole_number(request.query.get("limit", "100"))
    if limit is None or not 1 <= limit <= MAX_AUDIT_LIMIT:
        raise InvalidRequest(
            f"limit must be a whole number from 1 to {MAX_AUDIT_LIMIT}", param="limit"
        )
    entries = await _gateway(request).store.audit_log(limit=limit)
    return json_response([e.to_json() for e in entries])


async def show_key(request: web.Request) -> web.Response:
    store = _gateway(request).store
    key = await store.get_key(request.match_info["id"])
    balance_, held = await store.balance(key.id), await store.held(key.id)
    return json_response({**key.to_json(), "balance": balance_, "held": held})


async def revoke_key(request: web.Request) -> web.Response:
    gateway = _gateway(request)
    key = await gateway.store.revoke_key(request.match_info["id"], actor=actor(request))
    gateway.auth.forget(key.id)  # this process refuses it at once; others within cache_ttl
    return json_response(key.to_json())


async def set_limits(request: web.Request) -> web.Response:
    limits = _limits(await _object(request, set(LIMIT_FIELDS)), None)
    key = await _gateway(request).store.set_limits(
        request.match_info["id"], limits, actor=actor(request)
    )
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
    _check("credits", key_rules.credit(credits))
    key_id = request.match_info["id"]
    new_balance = await _gateway(request).store.credit(
        key_id, credits, note=_note(body), actor=actor(request)
    )
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


# Input checks: each failure is a 400 naming the parameter


async def _object(
    request: web.Request, allowed: set[str], *, empty_ok: bool = False
) -> dict[str, object]:
    if empty_ok and not request.can_read_body:
        return {}
    body = await read_json(request, MAX_BODY_BYTES)
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    for name in body:
        if name not in allowed:
            raise InvalidRequest(f"unknown field {name!r}", param=name)
    return body


def _check(param: str, problem: str | None) -> None:
    """A ``gateway.key_rules`` verdict as a 400 naming the field."""
    if problem is not None:
        raise InvalidRequest(f"{param} {problem}", param=param)


def _note(body: Mapping[str, object]) -> str:
    note = body.get("note", "")
    if not isinstance(note, str):
        raise InvalidRequest(
            f"note must be a string of at most {MAX_TEXT} characters", param="note"
        )
    _check("note", key_rules.note(note))
    return note


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _int(value: object, param: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidRequest(f"{param} must be a whole number", param=param)
    return value


def _limits(value: object, prefix: str | None) -> KeyLimits:
    def where(name: str) -> str:
        return f"{prefix}.{name}" if prefix else name

    if not isinstance(value, dict):
        raise InvalidRequest("limits must be an object", param=prefix)
    for name in value:
        if name not in LIMIT_FIELDS:
            raise InvalidRequest(f"unknown limit {name!r}", param=where(name))
    counts = [_int(value.get(name, 0), where(name)) for name in LIMIT_FIELDS]
    for name, count in zip(LIMIT_FIELDS, counts, strict=True):
        _check(where(name), key_rules.limit(count))
    return KeyLimits(*counts)


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
        limit = whole_number(raw_limit)
        if limit is None or limit < 1:
            raise InvalidRequest("limit must be a positive whole number", param="limit")
    return ledger_export.LedgerQuery(
        agent=params.get("agent") or None,
        kind=kind,
        since=time_param("since"),
        until=time_param("until"),
        limit=limit,
    )


# The route table: what create_admin_app serves and /openapi.json describes.

# Every admin operation: tagged "admin", and callable with the admin token only.
_admin_op = partial(Operation, tag="admin", security="admin_token")
_ID = Param("id", "path", description="a key id (key_...)")
_KEY_ERRORS = (401, 404, 503)
_BODY_ERRORS = (400, 401, 404, 413, 503)
_LEDGER_PARAMS = (
    _ID,
    Param("format", "query", {"type": "string", "enum": list(ledger_export.FORMATS)}),
    Param("agent", "query", description="only this agent's usage"),
    Param("kind", "query", {"type": "string", "enum": list(ledger_export.KINDS)}),
    Param("since", "query", description="from this time (UNIX seconds or ISO-8601)"),
    Param("until", "query", description="before this time (UNIX seconds or ISO-8601)"),
    Param("limit", "query", {"type": "integer", "minimum": 1}),
)

ADMIN = Table(
    (ADMIN_PREFIX,),
    (
        _admin_op(
            "GET",
            "/keys",
            list_keys,
            "adminListKeys",
            "List keys (never secrets)",
            replies=(json_reply(200, "the keys", "KeyList"),),
            errors=(401, 503),
        ),
        _admin_op(
            "POST",
            "/keys",
            create_key,
            "adminCreateKey",
            "Create a key; its secret is in this answer only",
            body="CreateKey",
            replies=(json_reply(201, "the record and its secret", "KeyWithSecret"),),
            errors=(400, 401, 413, 503),
        ),
        _admin_op(
            "GET",
            "/keys/{id}",
            show_key,
            "adminShowKey",
            "A key's record, balance and held credits",
            params=(_ID,),
            replies=(json_reply(200, "the record", "KeyWithBalance"),),
            errors=_KEY_ERRORS,
        ),
        _admin_op(
            "POST",
            "/keys/{id}/revoke",
            revoke_key,
            "adminRevokeKey",
            "Revoke a key (and any secret a rotation replaced); 409 if it already is",
            params=(_ID,),
            replies=(json_reply(200, "the record", "Key"),),
            errors=(*_KEY_ERRORS, 409),
        ),
        _admin_op(
            "POST",
            "/keys/{id}/rotate",
            rotate_key,
            "adminRotateKey",
            "A new secret for the key; the old one works for the grace period",
            params=(_ID,),
            body="RotateKey",
            replies=(json_reply(200, "the record and its new secret", "KeyWithSecret"),),
            errors=(*_BODY_ERRORS, 409),
        ),
        _admin_op(
            "PUT",
            "/keys/{id}/limits",
            set_limits,
            "adminSetLimits",
            "Replace a key's limits (a missing one is 0: none)",
            params=(_ID,),
            body="Limits",
            replies=(json_reply(200, "the record", "Key"),),
            errors=_BODY_ERRORS,
        ),
        _admin_op(
            "GET",
            "/keys/{id}/balance",
            balance,
            "adminBalance",
            "A key's balance, held and available credits",
            params=(_ID,),
            replies=(json_reply(200, "the balance", "Balance"),),
            errors=_KEY_ERRORS,
        ),
        _admin_op(
            "POST",
            "/keys/{id}/credit",
            credit,
            "adminCredit",
            "Add (negative: remove) credits, with a ledger entry",
            params=(_ID,),
            body="Credit",
            replies=(json_reply(200, "the new balance", "NewBalance"),),
            errors=_BODY_ERRORS,
        ),
        _admin_op(
            "GET",
            "/keys/{id}/ledger",
            ledger,
            "adminLedger",
            "The key's ledger, streamed as JSON, JSON lines or CSV",
            params=_LEDGER_PARAMS,
            replies=(
                Reply(
                    200,
                    "the entries, oldest first",
                    {JSON: "Ledger", "application/x-ndjson": None, "text/csv": None},
                ),
            ),
            errors=(400, *_KEY_ERRORS),
        ),
        _admin_op(
            "GET",
            "/audit",
            audit,
            "adminAudit",
            "The latest admin actions, newest first",
            params=(
                Param(
                    "limit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_AUDIT_LIMIT}
                ),
            ),
            replies=(json_reply(200, "the audit entries", "AuditLog"),),
            errors=(400, 401, 503),
        ),
        _admin_op(
            "GET",
            "/runtime",
            runtime,
            "adminRuntime",
            "This process's asyncio tasks and calls in flight (what a soak test watches)",
            replies=(json_reply(200, "the counts", "Runtime"),),
            errors=(401,),
        ),
    ),
)
