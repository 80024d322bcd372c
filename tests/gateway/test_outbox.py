"""The settlement outbox and metering while Redis is unreachable."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from gateway.errors import ServiceUnavailable
from gateway.events import Completed, TextDelta, Usage
from gateway.metering import Meter, cost
from gateway.outbox import Outbox, Pending
from gateway.settings import MeteringSettings
from gateway.store import Store
from gateway.store.holds import Holds
from gateway.tasks import BackgroundTasks
from tests.conftest import invocation
from tests.gateway.factories import batches, collect
from tests.gateway.test_metering import deltas, new_key, no_queued_write, route, usage_entries


class Flaky:
    """A write that fails while ``down``, recording every attempt."""

    def __init__(self) -> None:
        self.down = True
        self.attempts: list[str] = []
        self.written: list[str] = []

    def write(self, name: str) -> Callable[[], Any]:
        async def run() -> None:
            self.attempts.append(name)
            if self.down:
                raise ServiceUnavailable("down")
            self.written.append(name)

        return run


async def test_the_outbox_writes_in_order_once_the_store_answers() -> None:
    tasks = BackgroundTasks()
    flaky = Flaky()
    outbox = Outbox(tasks, 10, max_backoff=0.02)
    for name in "abc":
        assert outbox.put(Pending(name, name, flaky.write(name)))
    await asyncio.sleep(0.1)
    assert flaky.written == [] and len(outbox) == 3 and len(flaky.attempts) > 1
    assert set(flaky.attempts) == {"a"}  # the head is retried; nothing overtakes it
    flaky.down = False
    await tasks.drain(5)
    assert flaky.written == ["a", "b", "c"] and len(outbox) == 0 and outbox.written == 3


async def test_the_outbox_runs_its_before_hook_after_each_failure() -> None:
    tasks = BackgroundTasks()
    flaky, order = Flaky(), []

    async def before() -> None:
        order.append("renew")

    outbox = Outbox(tasks, 10, before=before, max_backoff=0.01)
    outbox.put(Pending("a", "a", flaky.write("a")))
    await asyncio.sleep(0.05)
    flaky.down = False
    await tasks.drain(5)
    assert order.count("renew") >= 2 and flaky.written == ["a"]


async def test_an_overflowing_outbox_logs_each_dropped_charge(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks = BackgroundTasks()
    flaky, dropped = Flaky(), []
    outbox = Outbox(tasks, 2, max_backoff=0.01)
    with caplog.at_level(logging.ERROR, logger="gateway.outbox"):
        for name in ("a", "b", "c", "d"):
            gone = (lambda n: lambda: dropped.append(n))(name)
            outbox.put(Pending(name, f"request {name}", flaky.write(name), gone))
    assert len(outbox) == 2 and outbox.dropped == 2
    assert "request c" in caplog.text and "request d" in caplog.text and "reaper" in caplog.text
    outbox.abandon()  # at exit, with Redis still away: the rest are logged too
    assert "request a" in caplog.text and len(outbox) == 0 and outbox.dropped == 4
    assert dropped == ["c", "d", "a", "b"]
    await tasks.drain(1)


async def test_a_write_that_raises_a_bug_does_not_block_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks = BackgroundTasks()
    written = []

    async def broken() -> None:
        raise ValueError("bug")

    async def fine() -> None:
        written.append("b")

    outbox = Outbox(tasks, 10)
    outbox.put(Pending("a", "a", broken))
    outbox.put(Pending("b", "b", fine))
    await tasks.drain(5)
    assert written == ["b"] and outbox.dropped == 1


# Metering while the store is down


class StoreSwitch:
    """Makes every ``Holds`` round trip fail with a 503 while ``down``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.down = False
        self.failing: set[str] = set()  # these fail even when the store is up
        for name in ("admit", "settle", "renew", "release", "expired"):
            original = getattr(Holds, name)
            monkeypatch.setattr(Holds, name, self._wrap(name, original))
        monkeypatch.setattr(Holds, "settle_soon", no_queued_write)  # every write through settle

    def _wrap(self, name: str, original: Any) -> Any:
        async def call(holds: Holds, *args: Any, **kwargs: Any) -> Any:
            if self.down or name in self.failing:
                raise ServiceUnavailable("the gateway's store is unavailable; retry later")
            return await original(holds, *args, **kwargs)

        return call


def make_meter(
    store: Store, tasks: BackgroundTasks, *, lease: float = 30.0, fail_open: bool = False
) -> Meter:
    settings = MeteringSettings(lease_seconds=lease, default_max_output_tokens=64)
    m = Meter(Holds(store.redis), tasks, settings, fail_open=fail_open)
    m.outbox._max_backoff = 0.02
    return m


async def test_a_settlement_waits_in_the_outbox_and_is_written_once(
    fake_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    switch = StoreSwitch(monkeypatch)
    tasks = BackgroundTasks()
    m = make_meter(fake_store, tasks)
    key = await new_key(fake_store, 10_000)
    hold = await m.admit(invocation(), key, route(), "req_out")
    await collect(m.wrap(batches([TextDelta("a"), Usage(3, 1), Completed()]), hold))
    switch.down = True
    m.settle(hold, "echo")
    await asyncio.sleep(0.1)
    assert len(m.outbox) == 1 and hold.charge_id in m._live  # still live: its lease renewed
    assert await fake_store.held(key.id) == hold.record.credits
    switch.down = False
    await tasks.drain(5)
    assert m._live == {} and len(m.outbox) == 0
    (entry,) = await usage_entries(fake_store, key)
    assert entry.amount == -5 and not entry.reaped
    assert await fake_store.balance(key.id) == 10_000 - 5
    assert await fake_store.held(key.id) == 0


def applied_then_lost(
    monkeypatch: pytest.MonkeyPatch, method: str, times: int | None = None
) -> list[Any]:
    """``Holds.<method>`` reaches Redis, and its answer is lost (a timeout after it ran):
    the first ``times`` calls, or every one. Returns what each call returned in Redis."""
    original, results = getattr(Holds, method), []

    async def applied_then_timed_out(holds: Holds, *args: Any, **kwargs: Any) -> Any:
        results.append(await original(holds, *args, **kwargs))
        if times is None or len(results) <= times:
            raise ServiceUnavailable("timeout after Redis applied it")
        return results[-1]

    monkeypatch.setattr(Holds, method, applied_then_timed_out)
    monkeypatch.setattr(Holds, "settle_soon", no_queued_write)  # every write through settle
    return results


async def test_a_settlement_whose_answer_was_lost_is_not_charged_twice(
    fake_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = BackgroundTasks()
    m = make_meter(fake_store, tasks)
    key = await new_key(fake_store, 10_000)
    hold = await m.admit(invocation(), key, route(), "req_lost")
    await collect(m.wrap(batches([TextDelta("a"), Usage(3, 1), Completed()]), hold))
    calls = applied_then_lost(monkeypatch, "settle", times=1)
    m.settle(hold, "echo")
    await tasks.drain(5)
    assert calls == [True, False]  # the retry was refused by the charge's marker
    assert len(await usage_entries(fake_store, key)) == 1
    assert await fake_store.balance(key.id) == 10_000 - 5


async def test_settlements_queue_behind_the_outbox_in_order(
    fake_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    switch = StoreSwitch(monkeypatch)
    tasks = BackgroundTasks()
    m = make_meter(fake_store, tasks)
    key = await new_key(fake_store, 100_000)
    holds = [await m.admit(invocation(), key, route(), f"req_{i}") for i in range(4)]
    switch.down = True
    for hold in holds[:2]:
        await collect(m.wrap(batches([TextDelta("a"), Completed()]), hold))
        m.settle(hold, "echo")
    await asyncio.sleep(0.05)
    switch.down = False
    for hold in holds[2:]:  # the store answers, but two settlements still wait: queue behind
        await collect(m.wrap(batches([TextDelta("a"), Completed()]), hold))
        m.settle(hold, "echo")
    await tasks.drain(5)
    ids = [e.request_id for e in await usage_entries(fake_store, key)]
    assert ids == ["req_0", "req_1", "req_2", "req_3"]


async def test_a_reaper_that_wins_the_race_charges_the_final_usage(
    fake_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = BackgroundTasks()
    m = make_meter(fake_store, tasks, lease=0.2)
    other = make_meter(fake_store, BackgroundTasks(), lease=0.2)  # never saw the outage
    key = await new_key(fake_store, 10_000)
    hold = await m.admit(invocation(), key, route(), "req_race")
    await collect(m.wrap(batches([TextDelta("a"), Usage(3, 7), Completed()]), hold))
    cut_off = {"settle", "renew"}  # this process cannot reach Redis; the other one can

    def isolate(name: str) -> None:
        original = getattr(m._holds, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            if name in cut_off:
                raise ServiceUnavailable("unreachable")
            return await original(*args, **kwargs)

        monkeypatch.setattr(m._holds, name, call)

    isolate("settle")
    isolate("renew")
    monkeypatch.setattr(m._holds, "settle_soon", no_queued_write)
    m.settle(hold, "echo")
    await asyncio.sleep(0.05)
    cut_off.discard("renew")
    await m.renew()  # the queued settlement's lease now carries its final usage
    assert await other.reap() == 0  # renewed: not expired
    cut_off.add("renew")
    await asyncio.sleep(0.3)
    assert await other.reap() == 1  # the lease ran out: the other process reaps it
    (entry,) = await usage_entries(fake_store, key)
    assert entry.reaped and entry.amount == -cost(Usage(3, 7), hold.pricing) == -17
    cut_off.clear()
    await tasks.drain(5)  # the outbox's own write is refused: charged once
    assert len(await usage_entries(fake_store, key)) == 1 and m._live == {}
    assert await fake_store.held(key.id) == 0
    assert await fake_store.balance(key.id) == 10_000 - 17


async def test_the_reaper_waits_a_lease_after_a_store_failure(
    fake_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    switch = StoreSwitch(monkeypatch)
    dead = make_meter(fake_store, BackgroundTasks(), lease=0.2)
    reaper = make_meter(fake_store, BackgroundTasks(), lease=0.2)
    key = await new_key(fake_store, 10_000)
    await dead.admit(invocation(), key, route(), "req_dead")
    await asyncio.sleep(0.25)
    switch.down = True
    with pytest.raises(ServiceUnavailable):
        await reaper.admit(invocation(), key, route(), "req_refused")  # the reaper sees it
    switch.down = False
    assert await reaper.reap() == 0  # within a lease of the failure: live processes renew first
    await asyncio.sleep(0.25)
    assert await reaper.reap() == 1


async def test_fail_closed_refuses_with_a_503_that_says_why(
    fake_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    switch = StoreSwitch(monkeypatch)
    tasks = BackgroundTasks()
    m = make_meter(fake_store, tasks)
    key = await new_key(fake_store, 10_000)
    switch.down = True
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable) as info:
        await m.admit(invocation(), key, route(), "req_closed")
    assert time.monotonic() - started < 0.5
    err = info.value
    assert err.status == 503 and err.code == "store_unavailable"
    assert "Redis" in err.message and "fail_closed" in err.message
    assert err.headers["Retry-After"] == "1"
    assert len(m.outbox) == 1  # a release, in case Redis applied the admission after all
    switch.down = False
    await tasks.drain(5)
    assert await fake_store.held(key.id) == 0 and await usage_entries(fake_store, key) == []


async def test_fail_closed_releases_an_admission_redis_applied_after_all(
    fake_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = BackgroundTasks()
    m = make_meter(fake_store, tasks)
    key = await new_key(fake_store, 10_000)
    applied_then_lost(monkeypatch, "admit")
    with pytest.raises(ServiceUnavailable):
        await m.admit(invocation(), key, route(), "req_ghost")
    assert await fake_store.held(key.id) > 0
    await tasks.drain(5)
    assert await fake_store.held(key.id) == 0
    assert await fake_store.balance(key.id) == 10_000


async def test_fail_open_admits_without_a_reservation_and_settles_later(
    fake_store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    switch = StoreSwitch(monkeypatch)
    tasks = BackgroundTasks()
    m = make_meter(fake_store, tasks, fail_open=True)
    key = await new_key(fake_store, 10_000)
    switch.down = True
    with caplog.at_level(logging.WARNING, logger="gateway.metering"):
        hold = await m.admit(invocation(), key, route(), "req_open")
    assert not hold.reserved and "WITHOUT a reservation" in caplog.text
    await collect(m.wrap(batches([TextDelta("a"), Usage(3, 1), Completed()]), hold))
    assert hold.billing_headers() == {"x-gateway-cost": "5"}
    m.settle(hold, "echo")
    await asyncio.sleep(0.05)
    with pytest.raises(ServiceUnavailable):  # the admission may have landed: renewed too
        await m.renew()
    assert len(m.outbox) == 1
    switch.down = False
    await tasks.drain(5)
    (entry,) = await usage_entries(fake_store, key)
    assert entry.amount == -5 and entry.request_id == "req_open"
    assert await fake_store.balance(key.id) == 10_000 - 5
    assert await fake_store.held(key.id) == 0


async def test_fail_open_renews_an_admission_whose_answer_was_lost(
    fake_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fail_open runs a request whose admission failed; if the admission did reach
    Redis, its hold is kept alive, so no other process reaps it at its input."""
    tasks = BackgroundTasks()
    live = make_meter(fake_store, tasks, lease=0.15, fail_open=True)
    other = make_meter(fake_store, BackgroundTasks())
    key = await new_key(fake_store, 10_000)
    applied_then_lost(monkeypatch, "admit")
    hold = await live.admit(invocation(), key, route(), "r")
    assert not hold.reserved and await fake_store.held(key.id) > 0  # it did land
    await collect(live.wrap(batches([*deltas(30), Usage(3, 30), Completed()]), hold))
    for _ in range(3):
        await asyncio.sleep(0.08)
        await live.renew()
        assert await other.reap() == 0
    live.settle(hold, "echo")
    await tasks.drain()
    (entry,) = await usage_entries(fake_store, key)
    assert not entry.reaped and entry.amount == -cost(Usage(3, 30), hold.pricing)
    assert await fake_store.held(key.id) == 0
