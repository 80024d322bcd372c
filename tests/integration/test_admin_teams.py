"""The admin API's teams on a live gateway: create, credit, limits, a key spending its
team's balance (and headers naming it), the team's ledger and a key's part of it, and
moving a key, audited; every answer as /openapi.json describes it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from jsonschema import Draft202012Validator

from gateway.server.admin.table import ADMIN
from gateway.server.openapi import document
from gateway.store import schema
from tests.conftest import RunningGateway, StartGateway

TOKEN = "admin-token-for-team-tests-0123456"
ENV = "GW_TEST_ADMIN_TOKEN"
CONFIG = f"""
admin:
  token_env: {ENV}
auth:
  cache_ttl: 0.3   # a move waits this long (and a little more)
backends:
  echo: {{type: echo}}
routes:
  echo:
    backend: echo
    pricing: {{input: 1, output: 2}}
    max_output_tokens: 50
"""
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SCHEMAS = document([ADMIN], title="t")["components"]["schemas"]


def valid(body: object, schema: str) -> None:
    validator = Draft202012Validator(
        {"$ref": f"#/components/schemas/{schema}", "components": {"schemas": SCHEMAS}}
    )
    validator.validate(body)


@pytest.fixture
async def gw(start_gateway: StartGateway, monkeypatch: pytest.MonkeyPatch) -> RunningGateway:
    monkeypatch.setenv(ENV, TOKEN)
    return await start_gateway(CONFIG)


async def call(
    http: aiohttp.ClientSession,
    gw: RunningGateway,
    method: str,
    path: str,
    body: object = None,
    *,
    status: int = 200,
) -> Any:
    async with http.request(method, gw.url + path, json=body, headers=AUTH) as r:
        text = await r.text()
        assert r.status == status, text
        return json.loads(text) if text else None


async def ask(
    http: aiohttp.ClientSession, gw: RunningGateway, secret: str
) -> aiohttp.ClientResponse:
    body = {"model": "echo", "messages": [{"role": "user", "content": "hello team"}]}
    headers = {"Authorization": f"Bearer {secret}"}
    async with http.post(f"{gw.url}/v1/chat/completions", json=body, headers=headers) as r:
        await r.read()
        return r


async def test_a_team_through_the_admin_api(
    gw: RunningGateway, http: aiohttp.ClientSession
) -> None:
    team = await call(http, gw, "POST", "/admin/teams",
                      {"name": "research", "balance": 10_000, "limits": {"rpm": 100}},
                      status=201)  # fmt: skip
    valid(team, "TeamWithBalance")
    team_id = team["id"]
    listed = await call(http, gw, "GET", "/admin/teams")
    valid(listed, "TeamList")
    assert [t["id"] for t in listed] == [team_id]
    limits = await call(http, gw, "PUT", f"/admin/teams/{team_id}/limits", {"max_concurrent": 5})
    valid(limits, "Team")
    assert limits["limits"]["max_concurrent"] == 5 and limits["limits"]["rpm"] == 0
    credited = await call(http, gw, "POST", f"/admin/teams/{team_id}/credit", {"credits": 500})
    assert credited == {"id": team_id, "balance": 10_500}

    key = await call(http, gw, "POST", "/admin/keys", {"name": "ci", "team": team_id}, status=201)
    valid(key, "KeyWithSecret")
    assert key["team"] == team_id
    answer = await ask(http, gw, key["key"])
    assert answer.status == 200
    cost = int(answer.headers["x-gateway-cost"])
    assert cost > 0 and answer.headers["x-gateway-balance-team"] == team_id
    assert int(answer.headers["x-gateway-balance"]) == 10_500 - cost

    async def settled() -> dict[str, Any]:
        for _ in range(100):
            shown: dict[str, Any] = await call(http, gw, "GET", f"/admin/teams/{team_id}")
            if shown["held"] == 0 and shown["balance"] < 10_500:
                return shown
            await asyncio.sleep(0.02)
        raise AssertionError("never settled")

    shown = await settled()
    valid(shown, "TeamWithBalance")
    assert shown["balance"] == 10_500 - cost and shown["keys"] == [key["id"]]
    team_ledger = await call(http, gw, "GET", f"/admin/keys/{team_id}/ledger")
    valid(team_ledger, "Ledger")
    assert sum(e["amount"] for e in team_ledger) == shown["balance"]
    assert [e["key_id"] for e in team_ledger if e["kind"] == "usage"] == [key["id"]]
    own = await call(http, gw, "GET", f"/admin/keys/{key['id']}/ledger")
    assert [e["amount"] for e in own] == [-cost]

    moved = await call(http, gw, "POST", f"/admin/keys/{key['id']}/move", {"team": None})
    valid(moved, "Key")
    assert moved["team"] is None
    refused = await ask(http, gw, key["key"])  # its own balance is empty
    assert refused.status == 402
    audit = await call(http, gw, "GET", "/admin/audit?limit=10")
    actions = [e["action"] for e in audit]
    assert actions[0] == "key.move" and "team.create" in actions and "team.credit" in actions
    assert audit[0]["details"] == {"from": team_id, "to": None}


async def test_team_errors(gw: RunningGateway, http: aiohttp.ClientSession) -> None:
    await call(http, gw, "GET", "/admin/teams/team_missing", status=404)
    await call(http, gw, "POST", "/admin/teams", {"name": ""}, status=400)
    await call(http, gw, "POST", "/admin/teams", {"name": "x", "balance": -1}, status=400)
    await call(http, gw, "POST", "/admin/teams/team_missing/credit", {"credits": 5}, status=404)
    await call(http, gw, "POST", "/admin/keys", {"name": "k", "team": "team_missing"}, status=404)
    team = await call(http, gw, "POST", "/admin/teams", {"name": "t"}, status=201)
    await call(http, gw, "POST", "/admin/keys",
               {"name": "k", "team": team["id"], "balance": 5}, status=400)  # fmt: skip
    key = await call(http, gw, "POST", "/admin/keys", {"name": "k"}, status=201)
    await call(http, gw, "POST", f"/admin/keys/{key['id']}/move", {}, status=400)
    await call(http, gw, "POST", f"/admin/keys/{key['id']}/move", {"team": 5}, status=400)
    await call(http, gw, "POST", f"/admin/keys/{key['id']}/move", {"team": "team_x"}, status=404)


async def test_refusals_name_the_team_and_a_moving_key_waits(
    gw: RunningGateway, http: aiohttp.ClientSession
) -> None:
    team = await call(http, gw, "POST", "/admin/teams", {"name": "poor", "balance": 10},
                      status=201)  # fmt: skip
    key = await call(http, gw, "POST", "/admin/keys", {"name": "k", "team": team["id"]}, status=201)
    body = {"model": "echo", "messages": [{"role": "user", "content": "hello team"}]}
    headers = {"Authorization": f"Bearer {key['key']}"}
    async with http.post(f"{gw.url}/v1/chat/completions", json=body, headers=headers) as r:
        assert r.status == 402
        message = (await r.json())["error"]["message"]
    assert message.startswith("Insufficient balance: this key's team has 10 credits")
    assert "add credits to the team" in message or "send less input" in message

    await gw.store.redis.hset(schema.key_record(key["id"]), "moving", "1")  # as a move does
    gw.gateway.auth.forget(key["id"])
    async with http.post(f"{gw.url}/v1/chat/completions", json=body, headers=headers) as r:
        assert r.status == 429 and r.headers["Retry-After"] == "1"
        assert (await r.json())["error"]["code"] == "key_moving"


async def test_a_moved_keys_ledger_and_aggregates_keep_what_it_spent_before(
    gw: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """A key spends on its own balance, moves into a team and spends there: its ledger and
    its aggregates through the admin API show both, and the team's only its part."""
    team = await call(http, gw, "POST", "/admin/teams", {"name": "t", "balance": 10_000},
                      status=201)  # fmt: skip
    key = await call(http, gw, "POST", "/admin/keys", {"name": "k", "balance": 10_000},
                     status=201)  # fmt: skip
    assert (await ask(http, gw, key["key"])).status == 200
    await gw.gateway.tasks.drain()  # settled: nothing in flight, the move may go
    await call(http, gw, "POST", f"/admin/keys/{key['id']}/move", {"team": team["id"]})
    await asyncio.sleep(0.4)  # past auth.cache_ttl: the gateway knows its team
    assert (await ask(http, gw, key["key"])).status == 200
    await gw.gateway.tasks.drain()

    async with http.get(f"{gw.url}/admin/keys/{key['id']}/ledger", headers=AUTH) as r:
        ledger = json.loads(await r.text())
    assert [e["kind"] for e in ledger] == ["credit", "usage", "usage"]
    assert [e.get("key_id", "") for e in ledger][1:] == ["", key["id"]]
    found = await call(http, gw, "GET", f"/admin/keys/{key['id']}/aggregates?count=1")
    assert found["total"]["requests"] == 2
    assert found["total"]["credits"] == -sum(e["amount"] for e in ledger if e["kind"] == "usage")
