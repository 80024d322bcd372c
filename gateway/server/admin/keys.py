"""The admin API's key handlers: list, create, show, revoke, rotate, set limits, and
erase a key's stored conversations."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from gateway import key_rules
from gateway.errors import InvalidRequest
from gateway.server.admin.request import (
    actor,
    check,
    gateway_of,
    json_object,
    key_limits,
    note,
    number,
    whole,
)
from gateway.server.body import json_response
from gateway.store import erasure
from gateway.store.records import LIMIT_FIELDS
from gateway.store.store import DEFAULT_GRACE_SECONDS

MAX_GRACE_SECONDS = 90 * 86400


async def list_keys(request: web.Request) -> web.Response:
    keys = await gateway_of(request).store.list_keys()
    return json_response([k.to_json() for k in keys])


async def create_key(request: web.Request) -> web.Response:
    body = await json_object(
        request, {"name", "balance", "agents", "expires_in_seconds", "limits", "note", "team"}
    )
    name = body.get("name")
    if not isinstance(name, str):
        raise InvalidRequest("name must be a non-empty string", param="name")
    check("name", key_rules.name(name))
    balance = whole(body.get("balance", 0), "balance")
    check("balance", key_rules.balance(balance))
    agents = body.get("agents", [])
    if not isinstance(agents, list) or not all(isinstance(a, str) for a in agents):
        raise InvalidRequest("agents must be a list of agent ids", param="agents")
    for i, agent in enumerate(agents):
        check(f"agents[{i}]", key_rules.agent(agent))
    expires_at = None
    if (expires_in := body.get("expires_in_seconds")) is not None:
        seconds = number(expires_in)
        if seconds is None:
            raise InvalidRequest("expires_in_seconds must be a number", param="expires_in_seconds")
        check("expires_in_seconds", key_rules.lifetime(seconds))
        expires_at = time.time() + seconds
    limits = key_limits(body.get("limits", {}), "limits")
    team = body.get("team") or ""
    if not isinstance(team, str):
        raise InvalidRequest("team must be a team id", param="team")
    gateway = gateway_of(request)
    # What the CLI prints on stderr: accepted (routes are edited live), but said.
    unserved = key_rules.unserved(agents, gateway.config.routes)
    key, secret = await gateway.store.create_key(
        name,
        balance=balance,
        agents=tuple(agents),
        expires_at=expires_at,
        limits=limits,
        note=note(body),
        actor=actor(request),
        team=team,
    )
    reply = {**key.to_json(), "key": secret, "balance": balance}
    if unserved:
        reply["warnings"] = [key_rules.unserved_warning(unserved)]
    return json_response(reply, status=201)


async def rotate_key(request: web.Request) -> web.Response:
    body = await json_object(request, {"grace_seconds"}, empty_ok=True)
    grace = body.get("grace_seconds", DEFAULT_GRACE_SECONDS)
    seconds = number(grace)
    if seconds is None or seconds < 0 or seconds > MAX_GRACE_SECONDS:
        raise InvalidRequest(
            f"grace_seconds must be a number from 0 to {MAX_GRACE_SECONDS}", param="grace_seconds"
        )
    gateway = gateway_of(request)
    key, secret = await gateway.store.rotate_key(
        request.match_info["id"], grace_seconds=seconds, actor=actor(request)
    )
    gateway.auth.forget(key.id)  # this process reads the new record at once
    return json_response({**key.to_json(), "key": secret})


async def show_key(request: web.Request) -> web.Response:
    store = gateway_of(request).store
    key = await store.get_key(request.match_info["id"])
    balance_, held = await store.balance(key.id), await store.held(key.id)
    return json_response({**key.to_json(), "balance": balance_, "held": held})


async def revoke_key(request: web.Request) -> web.Response:
    gateway = gateway_of(request)
    key = await gateway.store.revoke_key(request.match_info["id"], actor=actor(request))
    gateway.auth.forget(key.id)  # this process refuses it at once; others within cache_ttl
    return json_response(key.to_json())


async def set_limits(request: web.Request) -> web.Response:
    limits = key_limits(await json_object(request, set(LIMIT_FIELDS)), None)
    key = await gateway_of(request).store.set_limits(
        request.match_info["id"], limits, actor=actor(request)
    )
    return json_response(key.to_json())


async def purge_key(request: web.Request) -> web.Response:
    """Erase the key's stored conversations (``gateway.store.erasure``); its ledger stays.

    Run in a tracked task: a client that leaves does not cut it short between a
    batch's deletes, and the shutdown drains it. Asking again resumes it."""
    gateway = gateway_of(request)
    key = await gateway.store.get_key(request.match_info["id"])  # a 404 here, not in the task
    purge = erasure.purge_key(gateway.store, key.id, actor=actor(request))
    result = await asyncio.shield(gateway.tasks.spawn(purge, name="purge key"))
    return json_response(result.to_json())
