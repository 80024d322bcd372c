"""The admin API's team handlers: list, create and show teams, set their limits, add
credits, read a team's ledger, and move a key into, out of or between teams."""

from __future__ import annotations

from aiohttp import web

from gateway import key_rules
from gateway.errors import InvalidRequest
from gateway.server.admin.request import (
    actor,
    check,
    credit_body,
    gateway_of,
    json_object,
    key_limits,
    note,
    whole,
)
from gateway.server.body import json_response
from gateway.store.records import LIMIT_FIELDS
from gateway.store.teams import MOVE_MARGIN_SECONDS, Teams


def _teams(request: web.Request) -> Teams:
    return Teams(gateway_of(request).store)


async def list_teams(request: web.Request) -> web.Response:
    return json_response([t.to_json() for t in await _teams(request).all()])


async def create_team(request: web.Request) -> web.Response:
    body = await json_object(request, {"name", "balance", "limits", "note"})
    name = body.get("name")
    if not isinstance(name, str):
        raise InvalidRequest("name must be a non-empty string", param="name")
    check("name", key_rules.name(name))
    balance = whole(body.get("balance", 0), "balance")
    check("balance", key_rules.balance(balance))
    limits = key_limits(body.get("limits", {}), "limits")
    team = await _teams(request).create(
        name, balance=balance, limits=limits, note=note(body), actor=actor(request)
    )
    return json_response({**team.to_json(), "balance": balance}, status=201)


async def show_team(request: web.Request) -> web.Response:
    teams = _teams(request)
    store = gateway_of(request).store
    team = await teams.get(request.match_info["id"])
    balance, held = await store.balance(team.id), await store.held(team.id)
    members = await teams.members(team.id)
    return json_response({**team.to_json(), "balance": balance, "held": held, "keys": members})


async def set_team_limits(request: web.Request) -> web.Response:
    limits = key_limits(await json_object(request, set(LIMIT_FIELDS)), None)
    team = await _teams(request).set_limits(request.match_info["id"], limits, actor=actor(request))
    return json_response(team.to_json())


async def credit_team(request: web.Request) -> web.Response:
    credits, text = await credit_body(request)
    team_id = request.match_info["id"]
    balance = await _teams(request).credit(team_id, credits, note=text, actor=actor(request))
    return json_response({"id": team_id, "balance": balance})


async def move_key(request: web.Request) -> web.Response:
    """Move a key: 409 ``key_busy`` while it has requests in flight."""
    body = await json_object(request, {"team"})
    if "team" not in body:
        raise InvalidRequest("team is required (a team id, or null for none)", param="team")
    team = body["team"]
    if team is not None and not isinstance(team, str):
        raise InvalidRequest("team must be a team id or null", param="team")
    gateway = gateway_of(request)
    wait = gateway.config.auth.cache_ttl + MOVE_MARGIN_SECONDS  # every cache saw its mark
    key = await Teams(gateway.store).move(
        request.match_info["id"], team or None, actor=actor(request), wait=wait
    )
    gateway.auth.forget(key.id)  # this process admits it under its new team at once
    return json_response(key.to_json())
