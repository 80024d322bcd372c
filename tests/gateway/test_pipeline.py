from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Sequence

import pytest

from gateway.breaker import CircuitBreaker
from gateway.config import GatewayConfig, parse_config
from gateway.errors import (
    ConfigError,
    GatewayError,
    InsufficientQuota,
    NotFound,
    PermissionDenied,
    RateLimited,
    UpstreamError,
)
from gateway.events import Batch, Completed, Event, Failed, TextDelta, Usage
from gateway.invocation import AgentInvocation
from gateway.pipeline import Gateway, Generation
from gateway.plugin import CallContext, Observer, observed
from gateway.settings import MeteringSettings
from gateway.store import ApiKey, Store
from gateway.store.records import KeyLimits
from gateway.tasks import BackgroundTasks
from gateway.tokens import reserve_input
from tests.conftest import invocation
from tests.gateway.factories import asked_for_the_loop, collect, stream

CONFIG = """
backends:
  scripted: {type: echo}
routes:
  echo: {backend: scripted, pricing: {input: 1, output: 1}, max_output_tokens: 100}
  free: {backend: scripted}
  other: {backend: scripted}
"""


class Scripted:
    """A backend whose stream is given by the test; records what was closed."""

    def __init__(self, make: Callable[[], AsyncIterator[Batch]]) -> None:
        self.make = make
        self.invocations: list[AgentInvocation] = []

    def invoke(self, invocation: AgentInvocation, ctx: CallContext) -> AsyncIterator[Batch]:
        self.invocations.append(invocation)
        return self.make()

    async def aclose(self) -> None:
        return None


def scripted(events: Sequence[Event]) -> Scripted:
    return Scripted(lambda: stream(events))


CAP = 100  # the echo route's max_output_tokens


def gateway(store: Store, backend: Scripted, config: GatewayConfig | None = None) -> Gateway:
    config = config or parse_config(CONFIG)
    breakers = {name: CircuitBreaker(spec.breaker) for name, spec in config.backends.items()}
    generation = Generation(config, {"scripted": backend}, breakers, ())
    return Gateway(generation, store, BackgroundTasks())


# Gateway.route, and admission by Gateway.open


def key(agents: tuple[str, ...] = ()) -> ApiKey:
    return ApiKey("key_x", "x", agents)


def test_route_unknown_agent_is_404(fake_store: Store) -> None:
    gw = gateway(fake_store, scripted([Completed()]))
    with pytest.raises(NotFound) as info:
        gw.route(key(), "nope")
    assert (info.value.status, info.value.param, info.value.code) == (
        404,
        "model",
        "model_not_found",
    )


def test_route_agent_not_allowed_is_403(fake_store: Store) -> None:
    gw = gateway(fake_store, scripted([Completed()]))
    with pytest.raises(PermissionDenied) as info:
        gw.route(key(("other",)), "echo")
    assert info.value.status == 403
    assert gw.route(key(("other",)), "other").backend == "scripted"
    assert gw.agents(key(("other", "echo"))) == ["echo", "other"]
    assert gw.agents(key()) == ["echo", "free", "other"]


async def test_open_refuses_a_balance_below_the_maximum_cost(fake_store: Store) -> None:
    backend = scripted([Completed()])
    gw = gateway(fake_store, backend)
    inv = invocation()
    most = reserve_input(inv) + CAP  # input and output at 1 credit per token
    api_key, _ = await fake_store.create_key("k", balance=most - 1)
    with pytest.raises(InsufficientQuota) as info:
        await gw.open(inv, api_key, "r")
    error = info.value
    assert (error.status, error.code) == (402, "insufficient_quota")
    assert f"has {most - 1} credits (0 held" in error.message  # balance and held
    assert f"up to {most} credits" in error.message  # the estimate
    assert backend.invocations == []
    await fake_store.credit(api_key.id, 1)
    async with await gw.open(inv, api_key, "r") as call:
        assert await fake_store.held(api_key.id) == most
        assert (await collect(call))[-1] == Completed()
    await gw.tasks.drain()
    assert await fake_store.held(api_key.id) == 0


async def test_free_route_admitted_without_a_balance(fake_store: Store) -> None:
    backend = scripted([TextDelta("a"), Completed()])
    gw = gateway(fake_store, backend)
    api_key, _ = await fake_store.create_key("k")  # balance 0
    async with await gw.open(invocation(agent="free"), api_key, "r") as call:
        assert call.hold.record.credits == 0  # holds nothing, checks no money
        assert await fake_store.held(api_key.id) == 0
        out = await collect(call)
    assert out[0] == TextDelta("a") and out[-1] == Completed()
    await gw.tasks.drain()
    assert await fake_store.balance(api_key.id) == 0


async def test_open_sends_the_output_cap_to_the_backend(fake_store: Store) -> None:
    backend = scripted([Completed()])
    gw = gateway(fake_store, backend)
    api_key, _ = await fake_store.create_key("k", balance=10_000)
    async with await gw.open(invocation(max_output_tokens=10), api_key, "r"):
        pass
    async with await gw.open(invocation(max_output_tokens=10_000), api_key, "r"):
        pass
    async with await gw.open(invocation(agent="free"), api_key, "r"):
        pass
    default = MeteringSettings().default_max_output_tokens
    assert [i.max_output_tokens for i in backend.invocations] == [10, CAP, default]


async def test_open_caps_a_request_by_its_budget(fake_store: Store) -> None:
    backend = scripted([Completed()])
    gw = gateway(fake_store, backend)
    api_key, _ = await fake_store.create_key("k", balance=10_000)
    inv = invocation()
    async with await gw.open(inv, api_key, "r", budget=reserve_input(inv) + 7) as call:
        assert call.hold.record.credits == reserve_input(inv) + 7
    assert backend.invocations[0].max_output_tokens == 7
    with pytest.raises(InsufficientQuota) as info:
        await gw.open(inv, api_key, "r", budget=1)
    assert info.value.code == "budget_too_small" and len(backend.invocations) == 1


async def test_open_refuses_over_the_key_rate_limit_with_429(fake_store: Store) -> None:
    backend = scripted([Completed()])
    gw = gateway(fake_store, backend)
    api_key, _ = await fake_store.create_key("k", balance=10_000, limits=KeyLimits(rpm=1))
    async with await gw.open(invocation(), api_key, "r"):
        pass
    with pytest.raises(RateLimited) as info:
        await gw.open(invocation(), api_key, "r")
    assert info.value.status == 429 and "Retry-After" in info.value.headers
    assert len(backend.invocations) == 1


# Gateway.open and Call


async def test_open_streams_and_settles(fake_store: Store) -> None:
    backend = scripted([TextDelta("a"), TextDelta("b"), Usage(2, 2), Completed()])
    gw = gateway(fake_store, backend)
    api_key, _ = await fake_store.create_key("k", balance=1_000)
    inv = invocation()
    async with await gw.open(inv, api_key, "req_1") as call:
        assert call.ctx.request_id == "req_1" and call.ctx.key_id == api_key.id
        assert call.ctx.charge_id
        out = await collect(call)
    assert out == [TextDelta("a"), TextDelta("b"), Usage(2, 2, credits=4), Completed()]
    assert backend.invocations == [dataclasses.replace(inv, max_output_tokens=CAP)]
    await gw.tasks.drain()
    assert await fake_store.balance(api_key.id) == 996
    assert await fake_store.held(api_key.id) == 0
    entry = (await fake_store.ledger(api_key.id))[-1]
    assert (entry.kind, entry.amount, entry.request_id) == ("usage", -4, "req_1")
    assert entry.usage == Usage(2, 2) and entry.backend == "scripted"


async def test_a_call_in_flight_shows_and_renews_its_backend(fake_store: Store) -> None:
    backend = scripted([TextDelta("a"), Completed()])
    gw = gateway(fake_store, backend)
    api_key, _ = await fake_store.create_key("k", balance=1_000)
    async with await gw.open(invocation(), api_key, "req_1") as call:
        assert [r.backend for r in gw.meter.in_flight()] == ["scripted"]
        await gw.meter.renew()  # the lease's record in Redis names the backend from now on
        stored = await gw.holds.expired(time.time() + 10**6)
        assert [(c, r and r.backend) for _, c, r in stored] == [(call.ctx.charge_id, "scripted")]
        await collect(call)


async def test_open_refuses_before_invoking(fake_store: Store) -> None:
    backend = scripted([Completed()])
    gw = gateway(fake_store, backend)
    api_key, _ = await fake_store.create_key("k")
    with pytest.raises(InsufficientQuota):
        await gw.open(invocation(), api_key, "r")
    with pytest.raises(NotFound):
        await gw.open(invocation(agent="nope"), api_key, "r")
    assert backend.invocations == []


async def test_prefetch_raises_the_error_of_a_failed_first_event(fake_store: Store) -> None:
    closed: list[bool] = []

    async def refusing() -> AsyncIterator[Batch]:
        try:
            yield (Failed(RateLimited("upstream says slow down")),)
            yield (Completed(),)  # pragma: no cover - dropped by the stream contract
        finally:
            closed.append(True)

    gw = gateway(fake_store, Scripted(refusing))
    api_key, _ = await fake_store.create_key("k", balance=1_000)
    with pytest.raises(RateLimited) as info:
        await gw.open(invocation(), api_key, "r")
    assert info.value.message == "upstream says slow down"
    assert closed == [True]  # the upstream was released
    await gw.tasks.drain()
    assert len(await fake_store.ledger(api_key.id)) == 1  # the credit only: nothing charged
    assert await fake_store.held(api_key.id) == 0  # the hold was released
    assert await fake_store.balance(api_key.id) == 1_000


async def test_failure_after_content_is_part_of_the_stream(fake_store: Store) -> None:
    failed = Failed(UpstreamError("cut"))
    gw = gateway(fake_store, scripted([TextDelta("a"), failed]))
    api_key, _ = await fake_store.create_key("k", balance=1_000)
    async with await gw.open(invocation(), api_key, "r") as call:
        assert await collect(call) == [TextDelta("a"), failed]
    await gw.tasks.drain()
    entry = (await fake_store.ledger(api_key.id))[-1]  # billed for what was delivered
    assert entry.usage is not None and entry.usage.estimated and entry.usage.output_tokens >= 1


async def test_closing_a_call_early_closes_the_backend_and_settles(fake_store: Store) -> None:
    closed: list[bool] = []

    async def endless() -> AsyncIterator[Batch]:
        try:
            while True:
                yield (TextDelta("w "),)
        finally:
            closed.append(True)

    gw = gateway(fake_store, Scripted(endless))
    api_key, _ = await fake_store.create_key("k", balance=1_000)
    call = await gw.open(invocation(), api_key, "r")
    seen = 0
    async for _ in call:
        seen += 1
        if seen == 5:
            break
    await call.aclose()
    assert closed == [True]
    await gw.tasks.drain()
    entry = (await fake_store.ledger(api_key.id))[-1]
    assert entry.kind == "usage" and entry.usage is not None
    assert entry.usage.estimated and entry.usage.output_tokens >= 5
    assert await fake_store.held(api_key.id) == 0


async def test_an_exception_before_answering_is_a_502(fake_store: Store) -> None:
    async def raising() -> AsyncIterator[Batch]:
        raise ValueError("not a gateway error")
        yield (Completed(),)  # pragma: no cover

    gw = gateway(fake_store, Scripted(raising))
    api_key, _ = await fake_store.create_key("k", balance=1_000)
    with pytest.raises(GatewayError) as info:
        await gw.open(invocation(), api_key, "r")
    assert info.value.status == 502


def test_a_reload_keeps_unchanged_backends_and_builds_changed_ones() -> None:
    from gateway.pipeline import Generation

    first = Generation.build(parse_config(RELOAD.format(delay=0)))
    second = Generation.build(
        parse_config(RELOAD.format(delay=0) + "  extra: {backend: a}\n"), first
    )
    assert second.backends["a"] is first.backends["a"]
    assert second.breakers["a"] is first.breakers["a"]
    third = Generation.build(parse_config(RELOAD.format(delay=0.5)), second)
    assert third.backends["a"] is not second.backends["a"]  # its options changed


async def test_a_dropped_backend_is_closed_once_idle(fake_store: Store) -> None:
    from gateway.pipeline import Generation

    gw = Gateway(
        Generation.build(parse_config(RELOAD.format(delay=0))), fake_store, BackgroundTasks()
    )
    key, _ = await fake_store.create_key("k", balance=10**9)
    old = gw.generation.backends["a"]
    closed: list[bool] = []

    async def record_close() -> None:
        closed.append(True)

    old.aclose = record_close  # type: ignore[method-assign]
    call = await gw.open(invocation(agent="x"), key, "r1")
    gw.reload(parse_config(RELOAD.format(delay=0.5)))
    await gw.tasks.drain()
    assert closed == []  # still in use by the call in flight
    await call.aclose()
    await gw.tasks.drain()
    assert closed == [True]


RELOAD = """
backends:
  a: {{type: echo, chunk_delay: {delay}}}
routes:
  x: {{backend: a}}
"""


TWO_READS: list[Batch] = [(TextDelta("a"), TextDelta("b")), (Usage(1, 2), Completed())]
# What filters and the client get of them: metering prices the usage it passes on.
TWO_READS_PRICED: list[Batch] = [
    (TextDelta("a"), TextDelta("b")),
    (Usage(1, 2, credits=3), Completed()),
]


async def through(store: Store, *filters: object) -> list[Batch]:
    """What the client gets of ``TWO_READS`` through ``filters``."""

    async def two_reads() -> AsyncIterator[Batch]:
        for batch in TWO_READS:
            yield batch

    gw = gateway(store, Scripted(two_reads))
    gw.generation = dataclasses.replace(gw.generation, filters=filters)  # type: ignore[arg-type]
    api_key, _ = await store.create_key("k", balance=1_000)
    async with await gw.open(invocation(), api_key, "r") as call:
        return [batch async for batch in call]


async def test_a_filter_rewrites_events_with_new_batches_and_the_client_gets_them(
    fake_store: Store,
) -> None:
    seen: list[Event] = []

    def shout(event: Event) -> Event:
        return TextDelta(event.text.upper()) if isinstance(event, TextDelta) else event

    class Shout:
        async def wrap(self, batches: AsyncIterator[Batch], _: CallContext) -> AsyncIterator[Batch]:
            async for batch in batches:
                seen.extend(batch)
                yield tuple(
                    TextDelta(e.text.upper()) if isinstance(e, TextDelta) else e for e in batch
                )

    out = await through(fake_store, Shout())
    assert seen == [event for batch in TWO_READS_PRICED for event in batch]
    assert out == [(TextDelta("A"), TextDelta("B")), TWO_READS_PRICED[1]]


async def test_a_batch_filter_sees_the_batches_as_they_come(fake_store: Store) -> None:
    seen: list[Batch] = []

    class Spy:
        async def wrap(self, batches: AsyncIterator[Batch], _: CallContext) -> AsyncIterator[Batch]:
            async for batch in batches:
                seen.append(batch)
                yield batch

    out = await through(fake_store, Spy())
    assert seen == out == TWO_READS_PRICED


class Watcher:
    """An observing filter (``ObservingFilter``) that records what it was shown, as
    ``observe`` and as ``wrap``, in ``log``."""

    def __init__(self, name: str, log: list[tuple[str, str, object]]) -> None:
        self.name, self.log = name, log

    def observe(self, _: CallContext) -> Observer:
        watcher = self

        class Seen:
            def seen(self, batch: Batch) -> None:
                watcher.log.append((watcher.name, "seen", batch))

            def end(self) -> None:
                watcher.log.append((watcher.name, "end", None))

        return Seen()

    def wrap(self, batches: AsyncIterator[Batch], ctx: CallContext) -> AsyncIterator[Batch]:
        self.log.append((self.name, "wrap", None))
        return observed(batches, self.observe(ctx))


class Shouting:
    async def wrap(self, batches: AsyncIterator[Batch], _: CallContext) -> AsyncIterator[Batch]:
        async for batch in batches:
            yield tuple(TextDelta(e.text.upper()) if isinstance(e, TextDelta) else e for e in batch)


async def test_observing_filters_after_metering_observe_in_the_checks_step(
    fake_store: Store,
) -> None:
    log: list[tuple[str, str, object]] = []
    filters = (Watcher("outer", log), Watcher("inner", log))
    generation = dataclasses.replace(gateway(fake_store, scripted([])).generation, filters=filters)
    assert generation.observing == (filters[1], filters[0])
    out = await through(fake_store, *filters)
    assert out == TWO_READS_PRICED
    # No layer of their own (no ``wrap``); the last listed sees a batch first, and ends last.
    assert log == [
        ("inner", "seen", TWO_READS_PRICED[0]),
        ("outer", "seen", TWO_READS_PRICED[0]),
        ("inner", "seen", TWO_READS_PRICED[1]),
        ("outer", "seen", TWO_READS_PRICED[1]),
        ("outer", "end", None),
        ("inner", "end", None),
    ]


async def test_an_observing_filter_before_one_that_changes_the_stream_wraps_it(
    fake_store: Store,
) -> None:
    log: list[tuple[str, str, object]] = []
    filters = (Watcher("outer", log), Shouting(), Watcher("inner", log))
    generation = dataclasses.replace(gateway(fake_store, scripted([])).generation, filters=filters)
    assert generation.observing == (filters[2],)
    out = await through(fake_store, *filters)
    shouted = [(TextDelta("A"), TextDelta("B")), TWO_READS_PRICED[1]]
    assert out == shouted
    assert [entry for entry in log if entry[0] == "inner"] == [
        ("inner", "seen", TWO_READS_PRICED[0]),
        ("inner", "seen", TWO_READS_PRICED[1]),
        ("inner", "end", None),
    ]
    assert [entry for entry in log if entry[0] == "outer"] == [
        ("outer", "wrap", None),
        ("outer", "seen", shouted[0]),
        ("outer", "seen", shouted[1]),
        ("outer", "end", None),
    ]


async def test_an_observer_sees_the_failed_end_of_a_stream_and_ends_once_when_closed(
    fake_store: Store,
) -> None:
    log: list[tuple[str, str, object]] = []

    async def broken() -> AsyncIterator[Batch]:
        yield (TextDelta("a"),)
        raise UpstreamError("gone")

    gw = gateway(fake_store, Scripted(broken))
    gw.generation = dataclasses.replace(gw.generation, filters=(Watcher("w", log),))
    api_key, _ = await fake_store.create_key("k", balance=1_000)
    async with await gw.open(invocation(), api_key, "r") as call:
        out = [batch async for batch in call]
    assert out[0] == (TextDelta("a"),) and isinstance(out[-1][-1], Failed)
    assert [kind for _, kind, _ in log] == ["seen"] * len(out) + ["end"]
    assert [batch for _, kind, batch in log if kind == "seen"] == out
    log.clear()
    async with await gw.open(invocation(), api_key, "r") as call:
        await anext(aiter(call))  # the client leaves after the first batch
    assert [kind for _, kind, _ in log] == ["seen", "end"]


def test_the_storage_policy_and_cipher_come_from_the_configuration(
    fake_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (
        "responses: {retention_seconds: 600, encryption: {key_env: GW_TEST_PIPELINE_KEY}}\n"
        "backends: {e: {type: echo}}\n"
        "routes: {a: {backend: e, retention_seconds: 60}, b: {backend: e, store: never}}\n"
    )
    monkeypatch.setenv("GW_TEST_PIPELINE_KEY", "A" * 43 + "=")
    config = parse_config(text)
    gw = Gateway.build(config, fake_store, BackgroundTasks())
    assert gw.cipher.encrypts and gw.responses.cipher is gw.cipher is gw.response_runs.cipher
    assert (gw.storage("a").allowed, gw.storage("a").retention_seconds) == (True, 60)
    assert not gw.storage("b").allowed and gw.storage("c").retention_seconds == 600
    # A key gone bad after the file was checked still stops the start, never plain text.
    monkeypatch.setenv("GW_TEST_PIPELINE_KEY", "not a key")
    with pytest.raises(ConfigError) as info:
        Gateway.build(config, fake_store, BackgroundTasks())
    assert info.value.problems[0].path == "responses.encryption.key_env"


# The running loop, kept (Gateway.loop): on Python 3.11 asyncio.get_running_loop() is a
# getpid system call each time.


async def test_a_request_does_not_ask_asyncio_for_the_running_loop(
    fake_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = scripted([TextDelta("a"), Usage(2, 2), Completed()])
    gw = gateway(fake_store, backend)
    api_key, _ = await fake_store.create_key("k", balance=1_000)
    asked: list[str] = []
    for request in range(3):
        if request == 1:  # the first found it
            asked = asked_for_the_loop(monkeypatch)
        async with await gw.open(invocation(), api_key, f"req_{request}") as call:
            assert await collect(call) == [TextDelta("a"), Usage(2, 2, credits=4), Completed()]
        assert asked == []
        await gw.tasks.drain()
        asked.clear()  # (the test's own wait asks)
    assert gw.loop() is asyncio.get_running_loop()


def test_the_gateway_keeps_the_running_loop_and_takes_the_next_one(fake_store: Store) -> None:
    gw = gateway(fake_store, scripted([Completed()]))

    async def loops() -> tuple[asyncio.AbstractEventLoop, ...]:
        return gw.loop(), gw.loop(), asyncio.get_running_loop()

    first, again, running = asyncio.run(loops())
    assert first is again is running
    second, _, running = asyncio.run(loops())  # a new loop: the one kept no longer runs
    assert second is running and second is not first
    with pytest.raises(RuntimeError):  # and none runs: as asyncio.get_running_loop
        gw.loop()


class _Iterator:
    """A backend's stream that is an async iterator, not an async generator (nothing to
    close): the call iterates it and, closing, leaves it alone."""

    def __init__(self, batches: list[Batch]) -> None:
        self.batches = batches

    def __aiter__(self) -> _Iterator:
        return self

    async def __anext__(self) -> Batch:
        if not self.batches:
            raise StopAsyncIteration
        return self.batches.pop(0)


async def test_a_backend_stream_that_is_no_generator_is_read_closed_and_settled(
    fake_store: Store,
) -> None:
    batches: list[Batch] = [(TextDelta("a"),), (Usage(2, 2), Completed())]
    gw = gateway(fake_store, Scripted(lambda: _Iterator(batches)))
    api_key, _ = await fake_store.create_key("k", balance=1_000)
    async with await gw.open(invocation(), api_key, "req_1") as call:
        assert await collect(call) == [TextDelta("a"), Usage(2, 2, credits=4), Completed()]
    assert gw.active_calls == 0
    await gw.tasks.drain()
    assert await fake_store.balance(api_key.id) == 996
    assert await fake_store.held(api_key.id) == 0


async def test_a_call_closed_twice_settles_once(fake_store: Store) -> None:
    gw = gateway(fake_store, scripted([TextDelta("a"), Usage(2, 2), Completed()]))
    api_key, _ = await fake_store.create_key("k", balance=1_000)
    call = await gw.open(invocation(), api_key, "req_1")
    assert await collect(call) == [TextDelta("a"), Usage(2, 2, credits=4), Completed()]
    await call.aclose()
    await call.aclose()  # (``async with`` after an explicit close, say)
    assert gw.active_calls == 0
    await gw.tasks.drain()
    assert await fake_store.balance(api_key.id) == 996
    assert len(await fake_store.ledger(api_key.id)) == 2  # the credit, one charge
