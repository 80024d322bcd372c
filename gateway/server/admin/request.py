"""Reading an admin request: the gateway it acts on, who the audit log names, and
its input checked, each failure a 400 naming the parameter."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from gateway import key_rules
from gateway.errors import InvalidRequest
from gateway.pipeline import Gateway
from gateway.server.body import read_json, whole_number
from gateway.server.keys import GATEWAY
from gateway.store import ledger_export
from gateway.store.records import LIMIT_FIELDS, KeyLimits

MAX_BODY_BYTES = 64 * 1024
# Who acts, as the audit log names it: "admin-api" unless the console set "console".
ACTOR_KIND = web.RequestKey("actor_kind", str)
MAX_TEXT = key_rules.MAX_TEXT


def gateway_of(request: web.Request) -> Gateway:
    return request.config_dict[GATEWAY]


def actor(request: web.Request) -> str:
    """Who the audit log names: the API or the console, and the client's address, never
    the token."""
    return f"{request.get(ACTOR_KIND, 'admin-api')}:{request.remote or 'unknown'}"


async def json_object(
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


def check(param: str, problem: str | None) -> None:
    """A ``gateway.key_rules`` verdict as a 400 naming the field."""
    if problem is not None:
        raise InvalidRequest(f"{param} {problem}", param=param)


def note(body: Mapping[str, object]) -> str:
    text = body.get("note", "")
    if not isinstance(text, str):
        raise InvalidRequest(
            f"note must be a string of at most {MAX_TEXT} characters", param="note"
        )
    check("note", key_rules.note(text))
    return text


def number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


async def credit_body(request: web.Request) -> tuple[int, str]:
    """A credit's body, ``{"credits": whole, "note": text}``: the credits (checked as
    ``key_rules.credit`` asks) and the note."""
    body = await json_object(request, {"credits", "note"})
    if "credits" not in body:
        raise InvalidRequest("credits is required", param="credits")
    credits = whole(body["credits"], "credits")
    check("credits", key_rules.credit(credits))
    return credits, note(body)


def whole(value: object, param: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidRequest(f"{param} must be a whole number", param=param)
    return value


def key_limits(value: object, prefix: str | None) -> KeyLimits:
    def where(name: str) -> str:
        return f"{prefix}.{name}" if prefix else name

    if not isinstance(value, dict):
        raise InvalidRequest("limits must be an object", param=prefix)
    for name in value:
        if name not in LIMIT_FIELDS:
            raise InvalidRequest(f"unknown limit {name!r}", param=where(name))
    counts = [whole(value.get(name, 0), where(name)) for name in LIMIT_FIELDS]
    for name, count in zip(LIMIT_FIELDS, counts, strict=True):
        check(where(name), key_rules.limit(count))
    return KeyLimits(*counts)


def ledger_query(params: Mapping[str, str]) -> ledger_export.LedgerQuery:
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
