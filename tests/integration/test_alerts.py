"""Threshold events on a live gateway: a team's spend crossing a fraction of its balance
lands in the stream, in /metrics and at the webhook, signed, retried after a failure,
and never on the request's path."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from gateway.metering.alerts import SIGNATURE_HEADER, deliver, signature
from gateway.settings import AlertWebhook
from gateway.store.alerts import Alerts, ThresholdEvent
from gateway.store.teams import Teams
from tests.conftest import StartGateway, free_port
from tests.integration.support import eventually

SECRET_ENV = "GW_TEST_ALERT_SECRET"
SECRET = "alert-signing-secret"


class Receiver:
    """A webhook receiver on loopback that fails its first ``failures`` calls."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.bodies: list[bytes] = []
        self.signatures: list[str] = []
        self.calls = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        if self.calls <= self.failures:
            return web.Response(status=500)
        self.bodies.append(await request.read())
        self.signatures.append(request.headers.get(SIGNATURE_HEADER, ""))
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    got = Receiver(failures=1)
    app = web.Application()
    app.router.add_post("/hook", got.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield got, f"http://127.0.0.1:{port}/hook"
    await runner.cleanup()


async def test_a_team_crossing_half_its_balance_reaches_stream_metrics_and_webhook(
    start_gateway: StartGateway,
    receiver: tuple[Receiver, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    got, url = receiver
    monkeypatch.setenv(SECRET_ENV, SECRET)
    gw = await start_gateway(f"""
alerts:
  thresholds: [0.5, 1.0]
  webhook: {{url: "{url}", secret_env: {SECRET_ENV}, backoff: 0.05}}
backends:
  echo: {{type: echo}}
routes:
  echo:
    backend: echo
    pricing: {{input: 1000, output: 1000}}
    max_output_tokens: 5
""")
    team = await Teams(gw.store).create("t", balance=200_000)
    _, secret = await gw.store.create_key("k", team=team.id)
    body = {"model": "echo", "messages": [{"role": "user", "content": "one two three four"}]}
    async with aiohttp.ClientSession() as http:
        spent = 0
        while spent < 100_000:  # until half the team's balance is gone
            async with http.post(f"{gw.url}/v1/chat/completions", json=body,
                                 headers={"Authorization": f"Bearer {secret}"}) as r:  # fmt: skip
                assert r.status == 200, await r.text()
                spent += int(r.headers["x-gateway-cost"])
        await gw.gateway.tasks.drain()
        await eventually(lambda: _delivered(got), within=5)
        async with http.get(f"{gw.url}/metrics") as r:
            exposition = await r.text()

    events = await Alerts(gw.store.redis).latest()
    assert [(e.whose, e.account, e.kind, e.fraction) for e in events] == [
        ("team", team.id, "balance", 0.5)
    ]
    sent = json.loads(got.bodies[0])
    assert sent["account"] == team.id and sent["kind"] == "balance" and sent["fraction"] == 0.5
    expected = "sha256=" + hmac.new(SECRET.encode(), got.bodies[0], hashlib.sha256).hexdigest()
    assert got.signatures == [expected] and got.calls == 2  # the first attempt failed
    line = 'gateway_threshold_events_total{fraction="0.5",kind="balance",whose="team"} 1.0'
    assert line in exposition


async def _delivered(got: Receiver) -> bool:
    return bool(got.bodies)


async def test_a_webhook_that_never_answers_is_given_up_after_its_attempts(
    receiver: tuple[Receiver, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    got, url = receiver
    got.failures = 10
    monkeypatch.setenv(SECRET_ENV, SECRET)
    event = ThresholdEvent("team_x", "team", "balance", 0.8, 80, 100, 1.0, "key_x")
    webhook = AlertWebhook(url, SECRET_ENV, attempts=3, backoff=0.01)
    assert not await deliver(webhook, event)
    assert got.calls == 3
    got.failures = 0
    assert await asyncio.wait_for(deliver(webhook, event), 5)
    assert got.signatures[-1] == signature(SECRET, got.bodies[-1])
