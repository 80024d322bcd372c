"""The console's teams over HTTP: the list and a team's page show its balance, its keys
and what each spent; a key's page names its team; names are text, never markup."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from gateway.store.alerts import Alerts, watched
from gateway.store.teams import Teams
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
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
        yield client


async def text(http: aiohttp.ClientSession, url: str, status: int = 200) -> str:
    async with http.get(url) as r:
        body = await r.text()
        assert r.status == status, body
        return body


async def test_teams_their_keys_and_spend(console: Console, http: aiohttp.ClientSession) -> None:
    store = console.gw.gateway.store
    teams = Teams(store)
    team = await teams.create("<b>research</b>", balance=1_000_000)
    spender, secret = await store.create_key("spender", team=team.id)
    idle, _ = await store.create_key("idle", team=team.id)
    await console.spend(http, secret)
    await console.spend(http, secret)
    spent = 1_000_000 - await store.balance(team.id)
    assert spent > 0

    await console.sign_in(http)
    listing = await text(http, console.url + "/console/teams")
    assert f'href="/console/teams/{team.id}"' in listing
    assert "&lt;b&gt;research&lt;/b&gt;" in listing and "<b>research</b>" not in listing
    assert f"{1_000_000 - spent:,}" in listing and f"{spent:,}" in listing

    shown = await text(http, console.url + f"/console/teams/{team.id}")
    assert (
        f'href="/console/keys/{spender.id}"' in shown and f'href="/console/keys/{idle.id}"' in shown
    )
    assert shown.index(spender.id) < shown.index(idle.id)  # most spent first
    assert (
        f"<td>{spent:,}</td>" in shown.replace('<span class="credits"', "").replace("</span>", "")
        or f">{spent:,}<" in shown
    )
    assert "no threshold events" in shown
    await Alerts(store.redis).check(watched(idle.id, team.id, idle.limits, team.limits)[0],
                                    idle.id, (0.000001,))  # fmt: skip
    shown = await text(http, console.url + f"/console/teams/{team.id}")
    assert "no threshold events" not in shown and "0%" in shown
    key_page = await text(http, console.url + f"/console/keys/{spender.id}")
    assert f'href="/console/teams/{team.id}"' in key_page
    await text(http, console.url + "/console/teams/team_missing", status=404)
