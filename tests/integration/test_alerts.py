"""Threshold events on a live gateway: a team's spend crossing a fraction of its balance
lands in the stream, in /metrics and at the webhook, signed, retried after a failure,
and never on the request's path."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from redis import asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from gateway.metering import webhook as webhook_module
from gateway.metering.meter import Meter
from gateway.metering.webhook import (
    EVENT_ID_HEADER,
    GROUP,
    SIGNATURE_HEADER,
    Deliveries,
    body_of,
    post,
    signature,
)
from gateway.settings import AlertSettings, AlertWebhook, MeteringSettings
from gateway.store import Store, schema
from gateway.store.alerts import Alerts, ThresholdEvent
from gateway.store.holds import Admitted, HoldRecord, Holds
from gateway.store.teams import Teams
from gateway.tasks import BackgroundTasks
from tests.conftest import StartGateway, free_port
from tests.integration.processes import StartProcess
from tests.integration.support import eventually

SECRET_ENV = "GW_TEST_ALERT_SECRET"
SECRET = "alert-signing-secret"


class Receiver:
    """A webhook receiver on loopback that fails its first ``failures`` calls."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.bodies: list[bytes] = []
        self.signatures: list[str] = []
        self.ids: list[str] = []
        self.calls = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        if self.calls <= self.failures:
            return web.Response(status=500)
        self.bodies.append(await request.read())
        self.signatures.append(request.headers.get(SIGNATURE_HEADER, ""))
        self.ids.append(request.headers.get(EVENT_ID_HEADER, ""))
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
    body = body_of("1-0", event)
    assert not await post(webhook, "1-0", body)
    assert got.calls == 3
    got.failures = 0
    assert await asyncio.wait_for(post(webhook, "1-0", body), 5)
    assert got.signatures[-1] == signature(SECRET, got.bodies[-1])
    assert got.ids[-1] == "1-0" and json.loads(got.bodies[-1])["id"] == "1-0"


async def test_a_hold_the_reaper_settles_is_checked_for_thresholds_too(
    redis_client: aioredis.Redis,
) -> None:
    """A process died mid-request: the reaper charges its hold, and the crossing that
    charge makes (the key's balance, its team's) is an event as for a live settlement."""
    store = Store(redis_client)
    tasks = BackgroundTasks()
    holds = Holds(redis_client)
    settings = MeteringSettings(lease_seconds=1.0)
    meter = Meter(holds, tasks, settings, alerts=AlertSettings(thresholds=(0.5,)))
    team = await Teams(store).create("t", balance=1_000)
    alone, _ = await store.create_key("alone", balance=1_000)
    member, _ = await store.create_key("member", team=team.id)
    for key in (alone, await store.get_key(member.id)):
        now = time.time() - 10  # its lease ran out long ago: its process is gone
        record = HoldRecord(800, 50, now + 1, uuid.uuid4().hex, key.id, "echo", "", now,
                            progress_credits=600, team=key.team)  # fmt: skip
        held = await holds.admit(uuid.uuid4().hex, record, key.limits, True, None, key.team_limits)
        assert isinstance(held, Admitted)
    assert await meter.reap() == 2
    await tasks.drain()

    events = {
        (e.whose, e.account, e.kind, e.fraction, e.value)
        for e in await Alerts(redis_client).latest()
    }
    assert events == {
        ("key", alone.id, "balance", 0.5, 600),
        ("team", team.id, "balance", 0.5, 600),
    }
    for account in (alone.id, team.id):  # the reaper's charges are in the books
        ledger = await store.ledger(account)
        assert sum(e.amount for e in ledger) == await store.balance(account) == 400


class Hanging:
    """A receiver whose first call never answers (its caller is killed meanwhile); later
    calls get a 204. Keeps the event id header of each call."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.delivered: list[str] = []
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        event_id = request.headers.get(EVENT_ID_HEADER, "")
        self.calls.append(event_id)
        if len(self.calls) == 1:
            await self.release.wait()
            return web.Response(status=503)
        body = await request.read()
        assert request.headers[SIGNATURE_HEADER] == signature(SECRET, body)
        self.delivered.append(event_id)
        return web.Response(status=204)


@pytest.fixture
async def hanging() -> AsyncIterator[tuple[Hanging, str]]:
    got = Hanging()
    app = web.Application()
    app.router.add_post("/hook", got.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield got, f"http://127.0.0.1:{port}/hook"
    got.release.set()
    await runner.cleanup()


async def test_an_event_whose_process_is_killed_mid_delivery_is_delivered_by_another(
    hanging: tuple[Hanging, str],
    gateway_processes: StartProcess,
    redis_client: aioredis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two processes deliver the webhook's events; the one that took an event is killed
    while its POST hangs. The other takes the event over after ``claim_after`` and
    delivers it, with the same id; then nothing is pending in the group."""
    got, url = hanging
    monkeypatch.setenv(SECRET_ENV, SECRET)
    config = f"""
alerts:
  thresholds: [0.5]
  webhook: {{url: "{url}", secret_env: {SECRET_ENV}, timeout: 2, backoff: 0.05,
             claim_after: 2.5}}
backends:
  echo: {{type: echo}}
routes:
  echo: {{backend: echo}}
"""
    processes = [await gateway_processes(config), await gateway_processes(config)]
    await eventually(lambda: _group_exists(redis_client), within=5)
    event = ThresholdEvent("team_x", "team", "balance", 0.5, 50, 100, time.time(), "key_x")
    event_id = await Alerts(redis_client).append(event)
    await eventually(lambda: _called(got), within=5)
    pending = await redis_client.xpending_range(schema.ALERTS, GROUP, "-", "+", 10)
    assert [p["message_id"] for p in pending] == [event_id]
    holder = str(pending[0]["consumer"])
    doomed = [p for p in processes if f"-{p.proc.pid}-" in holder]
    assert len(doomed) == 1, holder
    doomed[0].kill()

    await eventually(lambda: _delivered_hanging(got), within=10)
    assert got.delivered == [event_id] and set(got.calls) == {event_id}
    await eventually(lambda: _nothing_pending(redis_client), within=5)


async def _group_exists(redis: aioredis.Redis) -> bool:
    try:
        groups = await redis.xinfo_groups(schema.ALERTS)
    except ResponseError:
        return False
    return any(g["name"] == GROUP for g in groups)


async def _called(got: Hanging) -> bool:
    return bool(got.calls)


async def _delivered_hanging(got: Hanging) -> bool:
    return bool(got.delivered)


async def _nothing_pending(redis: aioredis.Redis) -> bool:
    summary = await redis.xpending(schema.ALERTS, GROUP)
    return int(summary["pending"]) == 0


@pytest.mark.parametrize("topology", ["redis", "cluster"])
async def test_a_consumer_that_dies_mid_delivery_leaves_its_event_to_another(
    topology: str,
    hanging: tuple[Hanging, str],
    redis_client: aioredis.Redis,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two consumers of the group, on one Redis and on the Cluster: the first takes the
    event and dies while its POST hangs; the second takes it over once it has been idle
    ``claim_after`` and delivers it; nothing is left pending."""
    got, url = hanging
    monkeypatch.setenv(SECRET_ENV, SECRET)
    redis = redis_client
    if topology == "cluster":
        redis = RedisCluster.from_url(request.getfixturevalue("redis_cluster_url"),
                                      decode_responses=True)  # type: ignore[assignment]  # fmt: skip
        await redis.flushall()
    webhook = AlertWebhook(url, SECRET_ENV, timeout=60, backoff=0.05, claim_after=0.5)
    settings = AlertSettings(thresholds=(0.5,), webhook=webhook)
    first = Deliveries(redis, lambda: settings, consumer="first")
    second = Deliveries(redis, lambda: settings, consumer="second")
    try:
        assert not await first.once(webhook)  # makes the group; nothing to send yet
        event = ThresholdEvent("key_x", "key", "daily_budget", 0.5, 5, 10, time.time())
        event_id = await Alerts(redis).append(event)
        dying = asyncio.create_task(first.once(webhook))
        await eventually(lambda: _called(got), within=5)
        dying.cancel()  # its process is gone: the event stays pending, with it
        with contextlib.suppress(asyncio.CancelledError):
            await dying
        assert await first.pending() == 1
        assert not await second.once(webhook)  # not idle claim_after yet: still the first's
        await asyncio.sleep(0.6)
        assert await second.once(webhook)
        assert got.delivered == [event_id] and got.calls == [event_id, event_id]
        assert await second.pending() == 0
    finally:
        if topology == "cluster":
            await redis.aclose()


async def test_deliveries_make_their_group_again_after_the_stream_was_deleted(
    receiver: tuple[Receiver, str], redis_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    got, url = receiver
    got.failures = 0
    monkeypatch.setenv(SECRET_ENV, SECRET)
    webhook = AlertWebhook(url, SECRET_ENV, backoff=0.01)
    deliveries = Deliveries(redis_client, lambda: AlertSettings((0.5,), webhook), consumer="c")
    assert not await deliveries.once(webhook)
    await redis_client.delete(schema.ALERTS)  # an operator emptied it: the group went too
    assert not await deliveries.once(webhook)  # NOGROUP: noted, not a failure
    assert not await deliveries.once(webhook)  # the group is back
    event = ThresholdEvent("key_x", "key", "balance", 0.5, 5, 10, time.time())
    event_id = await Alerts(redis_client).append(event)
    assert await deliveries.once(webhook)
    assert got.ids == [event_id] and await deliveries.pending() == 0


async def test_a_consumer_long_gone_with_nothing_pending_leaves_the_group(
    receiver: tuple[Receiver, str], redis_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, url = receiver
    monkeypatch.setattr(webhook_module, "FORGET_CONSUMER_SECONDS", 0)
    webhook = AlertWebhook(url, SECRET_ENV, backoff=0.01)
    ghost = Deliveries(redis_client, lambda: AlertSettings((0.5,), webhook), consumer="ghost")
    live = Deliveries(redis_client, lambda: AlertSettings((0.5,), webhook), consumer="live")
    assert not await ghost.once(webhook)  # a process that read, then went away
    assert not await live.once(webhook)  # its pass for others' events forgets the ghost
    names = {c["name"] for c in await redis_client.xinfo_consumers(schema.ALERTS, GROUP)}
    assert "ghost" not in names
