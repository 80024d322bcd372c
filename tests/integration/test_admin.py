"""The admin API on a live gateway: auth, every endpoint, ledger export."""

from __future__ import annotations

import asyncio
import csv
import hmac
import io
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from gateway import apikeys
from gateway.errors import AuthenticationFailed, ConfigError, ServiceUnavailable
from gateway.server import admin
from gateway.server.app import create_app
from gateway.settings import AdminListen
from gateway.store import LedgerEntry, ledger_export, schema
from gateway.store.records import KeyLimits
from tests.conftest import RunningGateway, StartGateway, free_port, make_config
from tests.integration.support import usage_entries

TOKEN = "admin-token-for-tests-0123456789"
ENV = "GW_TEST_ADMIN_TOKEN"
CONFIG = f"""
admin:
  token_env: {ENV}
auth:
  cache_ttl: 60   # long: only the revocation itself can make the key refused at once
backends:
  echo: {{type: echo}}
routes:
  echo:
    backend: echo
    pricing: {{input: 1, output: 2}}
    max_output_tokens: 50
  other:
    backend: echo
    pricing: {{input: 1, output: 2}}
    max_output_tokens: 50
"""
AUTH = {"Authorization": f"Bearer {TOKEN}"}


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
    headers: dict[str, str] | None = None,
) -> Any:
    async with http.request(
        method, gw.url + path, json=body, headers=AUTH if headers is None else headers
    ) as r:
        text = await r.text()
        assert r.status == status, text
        return json.loads(text) if text else None


async def chat(http: aiohttp.ClientSession, gw: RunningGateway, secret: str, agent: str) -> int:
    """The status of one request, once its settlement (made after the answer) is written."""
    body = {"model": agent, "messages": [{"role": "user", "content": "one two three"}]}
    headers = {"Authorization": f"Bearer {secret}"}
    async with http.post(gw.url + "/v1/chat/completions", json=body, headers=headers) as r:
        await r.read()
    await gw.gateway.tasks.drain()
    return r.status


async def test_absent_without_an_admin_token(
    start_gateway: StartGateway, http: aiohttp.ClientSession
) -> None:
    gw = await start_gateway()
    for headers in ({}, AUTH):
        for method, path in (("GET", "/admin/keys"), ("POST", "/admin/keys")):
            error = await call(http, gw, method, path, {}, status=404, headers=headers)
            assert error["error"]["code"] == "unknown_url"


def test_an_empty_admin_token_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "  ")
    with pytest.raises(ConfigError) as raised:
        create_app(make_config(CONFIG))
    assert "admin.token_env" in str(raised.value) and ENV in str(raised.value)


async def test_a_wrong_or_missing_token_is_401(
    gw: RunningGateway, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    key, secret = await gw.new_key_record()
    wrong = [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"Authorization": f"Bearer {secret}"},  # an API key is not the admin token
    ]
    for headers in wrong:
        for method, path in (
            ("GET", "/admin/keys"),
            ("GET", f"/admin/keys/{key.id}/ledger?format=csv"),
            ("POST", f"/admin/keys/{key.id}/credit"),
            ("GET", "/admin/keys/key_missing"),
        ):
            async with http.request(method, gw.url + path, json={}, headers=headers) as r:
                body = await r.json()
                assert r.status == 401, (headers, path, body)
                assert r.headers["WWW-Authenticate"].startswith("Bearer")
                assert body["error"]["type"] == "authentication_error"
                assert set(body["error"]) == {"message", "type", "param", "code"}
                assert TOKEN not in json.dumps(body)
    assert len(compared) >= len(wrong) * 4 - 4  # every presented token went through it
    assert all(len(a) == len(b) == 32 for a, b in compared)  # digests: no length leak
    assert await gw.store.balance(key.id) == 1_000_000  # nothing happened
    await call(http, gw, "GET", "/admin/keys")  # the right token works


async def raw_request(gw: RunningGateway, head: bytes) -> tuple[int, bytes]:
    """The status and body of one request written as raw bytes (no client would send them)."""
    host, port = gw.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head)
        data = await asyncio.wait_for(reader.read(), 5)  # Connection: close
    finally:
        writer.close()
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize(
    "credential",
    [b"\xff", b"\xc3\xa9t\xc3\xa9", TOKEN.encode() + b"\xff", b"\xff" + TOKEN.encode(), b"\x80\t"],
)
async def test_a_token_that_is_not_ascii_is_401_not_500(
    gw: RunningGateway, credential: bytes
) -> None:
    # aiohttp hands such bytes to the application as lone surrogates, which str.encode()
    # refused: the comparison with the token raised, and the client got a 500.
    head = b"GET /admin/keys HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n"
    status, body = await raw_request(
        gw, head + b"Authorization: Bearer " + credential + b"\r\n\r\n"
    )
    assert status == 401, body
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["code"]) == ("authentication_error", "invalid_admin_token")


async def test_keys_lifecycle(gw: RunningGateway, http: aiohttp.ClientSession) -> None:
    created = await call(
        http,
        gw,
        "POST",
        "/admin/keys",
        {
            "name": "alice",
            "balance": 5000,
            "agents": ["echo"],
            "expires_in_seconds": 3600,
            "limits": {"rpm": 10, "daily_budget": 999},
        },
        status=201,
    )
    key_id, secret = created["id"], created["key"]
    assert secret.startswith("sk-gw-") and created["name"] == "alice"
    assert created["agents"] == ["echo"] and created["balance"] == 5000
    assert created["expires_at"] == pytest.approx(time.time() + 3600, abs=60)
    assert created["limits"] == {
        "rpm": 10,
        "tpm": 0,
        "max_concurrent": 0,
        "daily_budget": 999,
        "monthly_budget": 0,
    }

    listed = await call(http, gw, "GET", "/admin/keys")
    assert [k["id"] for k in listed] == [key_id]
    assert secret not in json.dumps(listed)  # shown once

    shown = await call(http, gw, "GET", f"/admin/keys/{key_id}")
    assert shown["id"] == key_id and shown["balance"] == 5000 and shown["held"] == 0
    assert secret not in json.dumps(shown)
    assert await call(http, gw, "GET", f"/admin/keys/{key_id}/balance") == {
        "id": key_id,
        "balance": 5000,
        "held": 0,
        "available": 5000,
    }

    credited = await call(
        http, gw, "POST", f"/admin/keys/{key_id}/credit", {"credits": -1000, "note": "refund"}
    )
    assert credited == {"id": key_id, "balance": 4000}
    assert (await gw.store.ledger(key_id))[-1].note == "refund"

    limited = await call(http, gw, "PUT", f"/admin/keys/{key_id}/limits", {"rpm": 100})
    assert limited["limits"]["rpm"] == 100 and limited["limits"]["daily_budget"] == 0  # replaced
    assert (await gw.store.get_key(key_id)).limits.rpm == 100

    assert await chat(http, gw, secret, "echo") == 200  # the key is now in the auth cache
    revoked = await call(http, gw, "POST", f"/admin/keys/{key_id}/revoke")
    assert revoked["revoked_at"] is not None
    assert await chat(http, gw, secret, "echo") == 401  # at once, despite cache_ttl: 60
    again = await call(http, gw, "POST", f"/admin/keys/{key_id}/revoke", status=409)
    assert (
        again["error"]["code"] == "key_revoked" and "already revoked" in again["error"]["message"]
    )
    assert (await gw.store.get_key(key_id)).revoked_at == revoked["revoked_at"]
    actions = [e.action for e in await gw.store.audit_log() if e.key_id == key_id]
    assert actions.count("key.revoke") == 1


async def test_purge_erases_a_keys_stored_responses_not_its_ledger(
    gw: RunningGateway, http: aiohttp.ClientSession
) -> None:
    key, secret = await gw.new_key_record()
    user = {"Authorization": f"Bearer {secret}"}
    ids = []
    for text in ("first", "second"):
        body = {"model": "echo", "input": f"{text} private question"}
        async with http.post(gw.url + "/v1/responses", json=body, headers=user) as r:
            assert r.status == 200
            ids.append((await r.json())["id"])
    send = {"message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "private"}]}}
    rpc = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": send}
    async with http.post(gw.url + "/a2a/echo", json=rpc, headers=user) as r:
        task_id = (await r.json())["result"]["task"]["id"]
    await gw.gateway.tasks.drain()
    ledger = await gw.store.ledger(key.id)
    assert len(ledger) == 4  # the credit and three charges

    purged = await call(http, gw, "POST", f"/admin/keys/{key.id}/purge")
    assert purged == {
        "id": key.id,
        "purged": {"responses": 2, "a2a_tasks": 1, "a2a_contexts": 1},
        "complete": True,
    }
    for response_id in ids:
        async with http.get(f"{gw.url}/v1/responses/{response_id}", headers=user) as r:
            assert r.status == 404
    get = {**rpc, "method": "GetTask", "params": {"id": task_id}}
    async with http.post(gw.url + "/a2a/echo", json=get, headers=user) as r:
        assert (await r.json())["error"]["code"] == -32001
    again = await call(http, gw, "POST", f"/admin/keys/{key.id}/purge")
    assert again["purged"] == {"responses": 0, "a2a_tasks": 0, "a2a_contexts": 0}  # idempotent
    assert await gw.store.ledger(key.id) == ledger
    audit = [e for e in await gw.store.audit_log() if e.action == "key.purge"]
    assert [e.details for e in audit] == [
        {"responses": 0, "a2a_tasks": 0, "a2a_contexts": 0},
        {"responses": 2, "a2a_tasks": 1, "a2a_contexts": 1},
    ]
    assert all(e.actor.startswith("admin-api:") and e.key_id == key.id for e in audit)
    await call(http, gw, "POST", "/admin/keys/key_nope/purge", status=404)
    await call(http, gw, "POST", f"/admin/keys/{key.id}/purge", headers={}, status=401)


async def test_a_key_for_an_agent_no_route_serves_is_created_with_a_warning(
    gw: RunningGateway, http: aiohttp.ClientSession
) -> None:
    body = {"name": "later", "agents": ["echo", "not-yet"]}
    created = await call(http, gw, "POST", "/admin/keys", body, status=201)
    assert created["agents"] == ["echo", "not-yet"]
    (warning,) = created["warnings"]
    assert "'not-yet'" in warning and "'echo'" not in warning
    plain = await call(
        http, gw, "POST", "/admin/keys", {"name": "ok", "agents": ["echo"]}, status=201
    )
    assert "warnings" not in plain


async def test_unknown_keys_are_404(gw: RunningGateway, http: aiohttp.ClientSession) -> None:
    for method, path, body in (
        ("GET", "/admin/keys/key_nope", None),
        ("POST", "/admin/keys/key_nope/revoke", None),
        ("PUT", "/admin/keys/key_nope/limits", {"rpm": 1}),
        ("GET", "/admin/keys/key_nope/balance", None),
        ("POST", "/admin/keys/key_nope/credit", {"credits": 5}),
        ("GET", "/admin/keys/key_nope/ledger?format=csv", None),
        ("GET", "/admin/nothing-here", None),
    ):
        error = await call(http, gw, method, path, body, status=404)
        assert error["error"]["type"] == "not_found_error", path
    assert await gw.store.list_keys() == []  # the credit created nothing


async def test_bad_input_is_400_naming_the_parameter(
    gw: RunningGateway, http: aiohttp.ClientSession
) -> None:
    key, _ = await gw.new_key_record()
    cases: list[tuple[str, str, object, str | None]] = [
        ("POST", "/admin/keys", {}, "name"),
        ("POST", "/admin/keys", {"name": ""}, "name"),
        ("POST", "/admin/keys", {"name": "x", "balance": -1}, "balance"),
        ("POST", "/admin/keys", {"name": "x", "balance": "10"}, "balance"),
        ("POST", "/admin/keys", {"name": "x", "balance": True}, "balance"),
        ("POST", "/admin/keys", {"name": "x", "agents": "echo"}, "agents"),
        ("POST", "/admin/keys", {"name": "x", "expires_in_seconds": 0}, "expires_in_seconds"),
        ("POST", "/admin/keys", {"name": "x", "expires_in_seconds": -1}, "expires_in_seconds"),
        ("POST", "/admin/keys", {"name": "x", "expires_in_seconds": 1e300}, "expires_in_seconds"),
        ("POST", "/admin/keys", {"name": "x", "agents": [""]}, "agents[0]"),
        ("POST", "/admin/keys", {"name": "x", "agents": ["echo", "a,b"]}, "agents[1]"),
        ("POST", "/admin/keys", {"name": "x", "balance": 10**30}, "balance"),
        ("POST", "/admin/keys", {"name": "x", "note": "n" * 1001}, "note"),
        ("POST", "/admin/keys", {"name": "x", "limits": {"rpm": -1}}, "limits.rpm"),
        ("POST", "/admin/keys", {"name": "x", "limits": {"speed": 1}}, "limits.speed"),
        ("POST", "/admin/keys", {"name": "x", "colour": "blue"}, "colour"),
        ("POST", "/admin/keys", [1, 2], None),
        ("PUT", f"/admin/keys/{key.id}/limits", {"rpm": 1.5}, "rpm"),
        ("POST", f"/admin/keys/{key.id}/credit", {}, "credits"),
        ("POST", f"/admin/keys/{key.id}/credit", {"credits": 0}, "credits"),
        ("POST", f"/admin/keys/{key.id}/credit", {"credits": 10**30}, "credits"),  # was a 503
        ("POST", f"/admin/keys/{key.id}/credit", {"credits": 1, "note": 5}, "note"),
        ("GET", f"/admin/keys/{key.id}/ledger?format=xml", None, "format"),
        ("GET", f"/admin/keys/{key.id}/ledger?kind=refund", None, "kind"),
        ("GET", f"/admin/keys/{key.id}/ledger?since=yesterday", None, "since"),
        ("GET", f"/admin/keys/{key.id}/ledger?until=-3", None, "until"),
        ("GET", f"/admin/keys/{key.id}/ledger?limit=0", None, "limit"),
        ("GET", f"/admin/keys/{key.id}/ledger?limit=%C2%B2", None, "limit"),  # "²": isdigit()
        ("GET", "/admin/audit?limit=0", None, "limit"),
        ("GET", "/admin/audit?limit=%C2%B2", None, "limit"),
        ("GET", "/admin/audit?limit=" + "9" * 5000, None, "limit"),  # too long for int()
    ]
    for method, path, body, param in cases:
        error = await call(http, gw, method, path, body, status=400)
        assert error["error"]["param"] == param, (path, body, error)
    async with http.post(gw.url + "/admin/keys", data=b"{not json", headers=AUTH) as r:
        assert r.status == 400
    assert [k.id for k in await gw.store.list_keys()] == [key.id]
    assert await gw.store.balance(key.id) == 1_000_000


async def test_ledger_export_filters_and_formats(
    gw: RunningGateway, http: aiohttp.ClientSession
) -> None:
    key, secret = await gw.new_key_record(balance=1_000_000)
    for agent in ("echo", "other", "echo"):
        assert await chat(http, gw, secret, agent) == 200
    await call(http, gw, "POST", f"/admin/keys/{key.id}/credit", {"credits": 77, "note": "gift"})
    await usage_entries(gw, key.id, count=3)
    everything = await gw.store.ledger(key.id)
    assert len(everything) == 5
    base = f"{gw.url}/admin/keys/{key.id}/ledger"

    async with http.get(base, headers=AUTH) as r:  # json by default
        assert r.status == 200 and r.content_type == "application/json"
        assert await r.json() == [e.to_json() for e in everything]

    async with http.get(base, params={"format": "jsonl", "agent": "echo"}, headers=AUTH) as r:
        assert r.content_type == "application/x-ndjson"
        lines = [json.loads(line) for line in (await r.text()).splitlines()]
    assert len(lines) == 2 and all(e["agent"] == "echo" and e["kind"] == "usage" for e in lines)

    async with http.get(base, params={"format": "csv", "kind": "credit"}, headers=AUTH) as r:
        assert r.content_type == "text/csv"
        assert "attachment" in r.headers["Content-Disposition"]
        rows = list(csv.DictReader(io.StringIO(await r.text())))
    assert [(row["kind"], row["amount"], row["note"]) for row in rows] == [
        ("credit", "1000000", "initial balance"),
        ("credit", "77", "gift"),
    ]

    usages = [e for e in everything if e.kind == "usage"]
    params = {"format": "csv", "since": repr(usages[1].at), "until": repr(usages[2].at)}
    async with http.get(base, params=params, headers=AUTH) as r:
        rows = list(csv.DictReader(io.StringIO(await r.text())))
    assert [row["id"] for row in rows] == [usages[1].id]  # [since, until)
    assert rows[0]["agent"] == "other" and int(rows[0]["amount"]) == usages[1].amount

    iso_future = "2999-01-01T00:00:00Z"
    async with http.get(base, params={"format": "jsonl", "since": iso_future}, headers=AUTH) as r:
        assert r.status == 200 and await r.text() == ""
    async with http.get(base, params={"format": "json", "limit": "2"}, headers=AUTH) as r:
        assert [e["id"] for e in await r.json()] == [e.id for e in everything[:2]]
    total = sum(e.amount for e in everything)
    assert total == await gw.store.balance(key.id)  # the export is the whole ledger


async def test_an_export_that_breaks_off_is_never_complete(
    gw: RunningGateway, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, _ = await gw.new_key_record()
    real = ledger_export.entries

    async def failing(*args: Any, **kwargs: Any) -> AsyncIterator[LedgerEntry]:
        async for entry in real(*args, **kwargs):
            yield entry
        raise ServiceUnavailable("the store went away")

    monkeypatch.setattr(ledger_export, "entries", failing)
    for fmt in ("csv", "jsonl", "json"):
        url = f"{gw.url}/admin/keys/{key.id}/ledger?format={fmt}"
        async with http.get(url, headers=AUTH) as r:
            assert r.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await r.read()
    await call(http, gw, "GET", "/admin/keys")  # the gateway carries on


async def test_rotation_keeps_the_account_and_honours_the_grace_period(
    gw: RunningGateway, http: aiohttp.ClientSession
) -> None:
    created = await call(
        http, gw, "POST", "/admin/keys", {"name": "bob", "balance": 5000, "note": "ops"}, status=201
    )
    key_id, old = created["id"], created["key"]
    assert created["note"] == "ops"
    await call(http, gw, "PUT", f"/admin/keys/{key_id}/limits", {"rpm": 100})
    assert await chat(http, gw, old, "echo") == 200
    spent = 5000 - await gw.store.balance(key_id)

    rotated = await call(http, gw, "POST", f"/admin/keys/{key_id}/rotate", {"grace_seconds": 60})
    new = rotated["key"]
    assert new != old and rotated["id"] == key_id and rotated["limits"]["rpm"] == 100
    assert rotated["previous_expires_at"] == pytest.approx(time.time() + 60, abs=5)
    assert new not in json.dumps(await call(http, gw, "GET", f"/admin/keys/{key_id}"))
    # Digests only: neither secret is anywhere in Redis.
    for name in await gw.store.redis.keys("*"):
        if await gw.store.redis.type(name) == "hash":
            values = json.dumps(await gw.store.redis.hgetall(name))
            assert old not in values and new not in values
    assert await chat(http, gw, new, "echo") == 200
    assert await chat(http, gw, old, "echo") == 200  # within the grace period
    assert await gw.store.balance(key_id) == 5000 - 2 * spent - spent  # one account
    ledger_ = await gw.store.ledger(key_id)
    assert sum(e.amount for e in ledger_) == await gw.store.balance(key_id)

    # Rotating again with no grace: the first secret's grace ends too.
    again = await call(http, gw, "POST", f"/admin/keys/{key_id}/rotate", {"grace_seconds": 0})
    newest = again["key"]
    assert await chat(http, gw, newest, "echo") == 200
    assert await chat(http, gw, new, "echo") == 401
    assert await chat(http, gw, old, "echo") == 401

    # Revocation refuses every secret, a rotated-out one in its grace period too.
    third = await call(http, gw, "POST", f"/admin/keys/{key_id}/rotate", {})
    assert third["previous_expires_at"] == pytest.approx(time.time() + 86400, abs=5)
    assert await chat(http, gw, newest, "echo") == 200  # the default grace: 24 h
    await call(http, gw, "POST", f"/admin/keys/{key_id}/revoke")
    assert await chat(http, gw, newest, "echo") == 401
    assert await chat(http, gw, third["key"], "echo") == 401
    error = await call(http, gw, "POST", f"/admin/keys/{key_id}/rotate", {}, status=409)
    assert error["error"]["code"] == "key_revoked"


async def test_an_old_secret_is_refused_when_its_grace_ends(gw: RunningGateway) -> None:
    key, old = await gw.new_key_record()
    _, new = await gw.store.rotate_key(key.id, grace_seconds=0.3)
    assert await gw.gateway.auth.authenticate_secret(old) is not None
    assert (await gw.gateway.auth.authenticate_secret(new)).id == key.id
    await asyncio.sleep(0.4)
    with pytest.raises(AuthenticationFailed):  # refused even from the auth cache
        await gw.gateway.auth.authenticate_secret(old)
    assert (await gw.gateway.auth.authenticate_secret(new)).id == key.id
    await gw.store.set_limits(key.id, KeyLimits(rpm=5))  # does not undo the rotation
    assert (await gw.store.get_key(key.id)).digest == apikeys.digest(new)


async def test_a_key_from_before_rotation_existed_rotates_with_its_grace(
    gw: RunningGateway,
) -> None:
    key, old = await gw.new_key_record()
    await gw.store.redis.hdel(schema.key_record(key.id), "digest")  # as records were
    _, new = await gw.store.rotate_key(key.id, grace_seconds=60)
    assert (await gw.store.find_key(apikeys.digest(old))) is not None
    assert (await gw.store.find_key(apikeys.digest(new))) is not None
    assert await gw.store.redis.ttl(schema.digest_index(apikeys.digest(old))) > 0


async def test_every_admin_action_is_audited(
    gw: RunningGateway, http: aiohttp.ClientSession
) -> None:
    created = await call(http, gw, "POST", "/admin/keys", {"name": "carol"}, status=201)
    key_id = created["id"]
    await call(http, gw, "POST", f"/admin/keys/{key_id}/credit", {"credits": 7, "note": "x"})
    await call(http, gw, "PUT", f"/admin/keys/{key_id}/limits", {"tpm": 9})
    rotated = await call(http, gw, "POST", f"/admin/keys/{key_id}/rotate")  # no body
    await call(http, gw, "POST", f"/admin/keys/{key_id}/revoke")
    await call(http, gw, "POST", "/admin/keys", {"name": ""}, status=400)  # not an action
    entries = await call(http, gw, "GET", "/admin/audit")
    assert [e["action"] for e in entries] == [
        "key.revoke",
        "key.rotate",
        "key.limits",
        "key.credit",
        "key.create",
    ]
    assert all(e["key_id"] == key_id for e in entries)
    assert all(e["actor"] == "admin-api:127.0.0.1" for e in entries)
    assert entries[3]["details"]["credits"] == 7 and entries[2]["details"]["limits"]["tpm"] == 9
    assert entries[1]["details"] == {"grace_seconds": 86400}
    text = json.dumps(entries)
    assert TOKEN not in text and created["key"] not in text and rotated["key"] not in text
    assert [e["action"] for e in await call(http, gw, "GET", "/admin/audit?limit=2")] == [
        "key.revoke",
        "key.rotate",
    ]
    for bad in ("0", "x", "10001"):
        error = await call(http, gw, "GET", f"/admin/audit?limit={bad}", status=400)
        assert error["error"]["param"] == "limit"


async def test_a_separate_admin_listener_serves_the_admin_api_only_there(
    start_gateway: StartGateway, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, TOKEN)
    port = free_port()
    config = CONFIG.replace(
        f"  token_env: {ENV}\n", f"  token_env: {ENV}\n  listen: {{port: {port}}}\n"
    )
    gw = await start_gateway(config)
    assert make_config(config).admin.listen == AdminListen("127.0.0.1", port)
    error = await call(http, gw, "GET", "/admin/keys", status=404)  # not on the public one
    assert error["error"]["code"] == "unknown_url"
    async with http.get(gw.url + "/openapi.json") as r:
        assert not [p for p in (await r.json())["paths"] if p.startswith("/admin")]

    runner = await admin.start_admin_site(gw.gateway, make_config(config))
    assert runner is not None
    try:
        base = f"http://127.0.0.1:{port}"
        async with http.get(base + "/admin/keys", headers=AUTH) as r:
            assert r.status == 200 and await r.json() == []
        async with http.get(base + "/admin/keys") as r:
            assert r.status == 401 and r.headers["X-Request-Id"]
        async with http.post(base + "/admin/keys", json={"name": "d"}, headers=AUTH) as r:
            assert r.status == 201
        async with http.get(base + "/openapi.json") as r:
            paths = (await r.json())["paths"]
        assert "/admin/keys/{id}/rotate" in paths and "/v1/chat/completions" not in paths
        async with http.get(base + "/v1/models") as r:
            assert r.status == 404
    finally:
        await runner.cleanup()
    assert await admin.start_admin_site(gw.gateway, make_config(CONFIG)) is None  # no listen


async def test_aggregates_count_what_was_just_spent(
    gw: RunningGateway, http: aiohttp.ClientSession
) -> None:
    made = await call(
        http, gw, "POST", "/admin/keys", {"name": "spender", "balance": 10_000}, status=201
    )
    assert await chat(http, gw, made["key"], "echo") == 200
    assert await chat(http, gw, made["key"], "other") == 200
    ledger = await call(http, gw, "GET", f"/admin/keys/{made['id']}/ledger?kind=usage")
    spent = -sum(e["amount"] for e in ledger)
    mine = await call(http, gw, "GET", f"/admin/keys/{made['id']}/aggregates")
    assert mine["period"] == "day" and len(mine["buckets"]) == 30
    today = mine["buckets"][-1]
    assert (today["credits"], today["requests"], today["errors"]) == (spent, 2, 0)
    assert today["credited"] == 10_000 and spent > 0
    assert sorted(a["agent"] for a in mine["by_agent"]) == ["echo", "other"]
    hours = await call(http, gw, "GET", f"/admin/keys/{made['id']}/aggregates?period=hour&count=3")
    assert len(hours["buckets"]) == 3 and hours["total"]["credits"] == spent
    overall = await call(http, gw, "GET", "/admin/aggregates?count=7")
    assert overall["total"]["credits"] == spent and overall["top_keys"][0]["id"] == made["id"]
    for bad in ("period=week", "count=0", "period=hour&count=193", "count=x"):
        error = await call(http, gw, "GET", f"/admin/aggregates?{bad}", status=400)
        assert error["error"]["param"] in ("period", "count")
    await call(http, gw, "GET", "/admin/keys/key_nope/aggregates", status=404)
    await call(http, gw, "GET", "/admin/aggregates", status=401, headers={})
