"""The console over plain HTTP: sign-in, sessions, CSRF, the security headers, where
it is served and where not, and that its actions are the admin API's, audited."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest

from gateway.server.console import session
from gateway.store import schema
from tests.conftest import StartGateway
from tests.gateway.server.console.support import ENV, TOKEN, Console, start_console


@pytest.fixture
async def console(
    start_gateway: StartGateway, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Console]:
    monkeypatch.setenv(ENV, TOKEN)
    running = await start_console(start_gateway)
    yield running
    await running.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    jar = aiohttp.CookieJar(unsafe=True)  # keeps cookies of 127.0.0.1
    async with aiohttp.ClientSession(cookie_jar=jar) as client:
        yield client


async def test_nothing_before_sign_in(console: Console, http: aiohttp.ClientSession) -> None:
    async with http.get(console.url + "/", allow_redirects=False) as r:
        assert r.status == 302 and r.headers["Location"] == "/console/"
    for path in ("/console/", "/console/keys", "/console/live", "/console/routes"):
        async with http.get(console.url + path, allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/console/login", path
            assert r.headers["Content-Security-Policy"] == session.CSP
    async with http.get(console.url + "/console/api/live") as r:
        assert r.status == 401
    async with http.get(console.url + "/console/api/admin/keys") as r:
        assert r.status == 401
    async with http.get(console.url + "/console/login") as r:
        page = await r.text()
    assert "csrf-token" not in page and "<nav>" not in page and 'name="token"' in page


async def test_sign_in_sign_out_and_the_cookie(
    console: Console, http: aiohttp.ClientSession
) -> None:
    async with http.post(console.url + "/console/login", data={"token": "wrong"}) as r:
        assert r.status == 401 and "not the admin token" in await r.text()
    async with http.post(
        console.url + "/console/login", data={"token": TOKEN}, allow_redirects=False
    ) as r:
        assert r.status == 303 and r.headers["Location"] == "/console/"
        cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    assert TOKEN not in cookie
    csrf = await console.sign_in(http)
    async with http.get(console.url + "/console/") as r:
        assert r.status == 200 and r.headers["X-Content-Type-Options"] == "nosniff"
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
        assert "script-src 'self'" in r.headers["Content-Security-Policy"]
        assert TOKEN not in await r.text()
    stored = [k async for k in console.gw.store.redis.scan_iter(match="gw:console:session:*")]
    assert len(stored) == 2  # two sign-ins; neither stored under its cookie's value
    assert 0 < await console.gw.store.redis.ttl(stored[0]) <= session.SESSION_SECONDS
    async with http.post(console.url + "/console/logout", data={"csrf": csrf}) as r:
        assert r.status == 200 and str(r.url).endswith("/console/login")
    async with http.get(console.url + "/console/", allow_redirects=False) as r:
        assert r.status == 303


async def test_sessions_expire(console: Console, http: aiohttp.ClientSession) -> None:
    await console.sign_in(http)
    async for name in console.gw.store.redis.scan_iter(match="gw:console:session:*"):
        await console.gw.store.redis.pexpire(name, 1)
    await asyncio.sleep(0.01)
    async with http.get(console.url + "/console/keys", allow_redirects=False) as r:
        assert r.status == 303


async def test_a_change_needs_the_csrf_token_and_this_origin(
    console: Console, http: aiohttp.ClientSession
) -> None:
    csrf = await console.sign_in(http)
    url = console.url + "/console/api/admin/keys"
    async with http.post(url, json={"name": "x"}) as r:
        assert r.status == 403 and (await r.json())["error"]["code"] == "csrf_failed"
    async with http.post(url, json={"name": "x"}, headers={"X-CSRF-Token": "forged"}) as r:
        assert r.status == 403
    evil = {"X-CSRF-Token": csrf, "Origin": "http://evil.example"}
    async with http.post(url, json={"name": "x"}, headers=evil) as r:
        assert r.status == 403
    async with http.post(console.url + "/console/logout", data={"csrf": "forged"}) as r:
        assert r.status == 403
    for odd in ("null", "http://127.0.0.1.evil.example"):
        async with http.post(url, json={}, headers={"X-CSRF-Token": csrf, "Origin": odd}) as r:
            assert r.status == 403, odd
    raw = {"X-CSRF-Token": "\u00e9t\u00e9".encode().decode("latin-1")}  # not ASCII: no 500
    async with http.post(url, json={"name": "x"}, headers=raw) as r:
        assert r.status == 403
    async with http.post(url, json={"name": "<b>x</b>"}, headers={"X-CSRF-Token": csrf}) as r:
        assert r.status == 201
        made = await r.json()
    assert made["key"].startswith("sk-gw-")
    audit = await console.gw.store.audit_log(limit=1)
    assert audit[0].action == "key.create" and audit[0].actor.startswith("console:")
    assert await console.gw.store.redis.exists(schema.key_record(made["id"]))


async def test_the_console_is_absent_from_the_public_listener(
    console: Console, http: aiohttp.ClientSession
) -> None:
    for path in ("/console/", "/console/login", "/console/static/console.js", "/"):
        async with http.get(console.gw.url + path, allow_redirects=False) as r:
            assert r.status == 404, path


async def test_pages_render_with_data(
    console: Console, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.requests")  # the access log is on
    key, secret = await console.gw.store.create_key("<script>alert(1)</script>", balance=10_000)
    await console.spend(http, secret)
    await console.sign_in(http)
    for path in ("/console/", "/console/keys", f"/console/keys/{key.id}", "/console/routes",
                 "/console/live", "/console/keys?q=script&sort=name"):  # fmt: skip
        async with http.get(console.url + path) as r:
            page = await r.text()
            assert r.status == 200, (path, page)
        assert "<script>alert" not in page, path
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    async with http.get(console.url + "/console/api/live") as r:
        live = await r.json()
    assert live["recent"][0]["key_id"] == key.id and live["in_flight"] == []
    async with http.get(console.url + "/console/keys/key_nope") as r:
        assert r.status == 404 and "no key" in await r.text()
    async with http.get(console.url + "/console/static/console.js") as r:
        assert r.status == 200 and r.content_type == "text/javascript"
    async with http.get(console.url + "/console/static/nope.js") as r:
        assert r.status == 404


async def test_sign_ins_stop_after_ten_wrong_tokens(
    console: Console, http: aiohttp.ClientSession
) -> None:
    for _ in range(session.MAX_FAILED_SIGN_INS):
        async with http.post(console.url + "/console/login", data={"token": "guess"}) as r:
            assert r.status == 401
    async with http.post(console.url + "/console/login", data={"token": TOKEN}) as r:
        assert r.status == 429 and 0 < int(r.headers["Retry-After"]) <= 300
        assert "Too many wrong tokens" in await r.text()
    await console.gw.store.redis.delete(schema.console_sign_ins("127.0.0.1"))
    await console.sign_in(http)  # once forgotten
