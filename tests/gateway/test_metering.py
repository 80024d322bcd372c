from __future__ import annotations

import asyncio
import dataclasses
import decimal
import inspect
import math
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import amounts, stream_contract
from gateway.errors import InsufficientQuota, RateLimited, ServiceUnavailable
from gateway.events import (
    Batch,
    Completed,
    Event,
    Failed,
    ReasoningDelta,
    TextDelta,
    ToolCallArgumentsDelta,
    ToolCallStarted,
    Usage,
)
from gateway.invocation import AgentInvocation
from gateway.metering import Hold, Meter, cost
from gateway.metering.headers import rate_limits
from gateway.metering.hold import admitted_hold
from gateway.metering.pricing import input_costs, sane, tokens_cost
from gateway.metering.settlement import ledger_fields
from gateway.metering.tally import Tally
from gateway.route import Pricing, Route, RouteLimits
from gateway.settings import MeteringSettings
from gateway.store import ApiKey, Store, pipelining, schema
from gateway.store.gateway_totals import TOKEN_FIELDS, ledger_tokens
from gateway.store.holds import Admitted, Charge, HoldRecord, Holds
from gateway.store.records import KeyLimits, LedgerEntry
from gateway.tasks import BackgroundTasks
from gateway.tokens import estimate_input, reserve_input
from tests.conftest import invocation
from tests.gateway.factories import batches, close, collect, context, pricing

PRICED = Route(backend="echo", pricing=pricing(input="0.15", output="0.6"))


# cost()


def test_cost_rounds_up_once_per_request() -> None:
    assert cost(Usage(input_tokens=3), pricing(input="0.15")) == 1  # ceil(0.45)
    # Rounded once over the sum, not once per kind of token: ceil(0.4 + 0.4), not 1 + 1.
    assert cost(Usage(1, 1), pricing(input="0.4", output="0.4")) == 1
    assert cost(Usage(10, 0), pricing(input="0.1")) == 1  # exact: no float 1.0000000000000002
    assert cost(Usage(0, 0), pricing(input="5", output="5")) == 0


def test_cost_is_exact_with_decimal_prices() -> None:
    # 0.1 * 30 == 3 exactly in decimal (binary floats give 3.0000000000000004 -> 4).
    assert cost(Usage(30, 0), pricing(input="0.1")) == 3
    assert cost(Usage(1_000_000, 1_000_000), pricing(input="2.5", output="10")) == 12_500_000
    assert cost(Usage(7, 0), pricing(input="0.000001")) == 1


def test_cached_tokens_use_the_cached_price() -> None:
    p = pricing(input="1", output="0", cached_input="0.25")
    # 100 input of which 40 cached: 60 * 1 + 40 * 0.25 = 70
    assert cost(Usage(input_tokens=100, cached_input_tokens=40), p) == 70


def test_cached_tokens_fall_back_to_the_input_price() -> None:
    p = pricing(input="1")
    assert cost(Usage(input_tokens=100, cached_input_tokens=40), p) == 100


def test_cache_write_price_and_fallback() -> None:
    usage = Usage(input_tokens=100, cached_input_tokens=10, cache_write_tokens=30)
    p = pricing(input="1", cached_input="0.1", cache_write="2")
    assert cost(usage, p) == 60 + 1 + 60
    assert cost(usage, pricing(input="1", cached_input="0.1")) == 60 + 1 + 30


def test_zero_cached_price_is_not_the_input_price() -> None:
    p = pricing(input="1", cached_input="0")
    assert cost(Usage(input_tokens=10, cached_input_tokens=10), p) == 0


def test_tokens_cost_is_the_cost_of_the_same_usage() -> None:
    prices = [
        pricing(input="0.15", output="0.6"),
        pricing(input="1", output="2", cached_input="0.1", cache_write="1.25"),
        pricing(input="0.000001", output="0", cached_input="0"),
        pricing(),
    ]
    for p in prices:
        for counts in [(0, 0, 0, 0), (3, 0, 0, 0), (7, 11, 0, 0), (100, 5, 40, 30), (5, 1, 9, 0)]:
            usage = Usage(counts[0], counts[1], counts[2], counts[3])
            uncached = max(0, usage.input_tokens - counts[2] - counts[3])
            cached_price = p.input if p.cached_input is None else p.cached_input
            write_price = p.input if p.cache_write is None else p.cache_write
            every_term = (
                uncached * p.input
                + counts[2] * cached_price
                + counts[3] * write_price
                + counts[1] * p.output
            )
            assert tokens_cost(p, *counts) == cost(usage, p) == math.ceil(every_term)


COUNT = (
    st.integers(min_value=-5, max_value=20)
    | st.integers(-(10**13), 10**13)
    | st.sampled_from([0, 10**12, 10**12 + 1])
)


PRICE = st.decimals(min_value=0, max_value=1_000_000, places=6, allow_nan=False)


OPTIONAL_PRICE = st.none() | PRICE | st.decimals(min_value=0, max_value=1, places=12)


@settings(max_examples=500, deadline=None, derandomize=True)
@given(PRICE, PRICE, OPTIONAL_PRICE, OPTIONAL_PRICE, COUNT, COUNT, COUNT, COUNT)
def test_tokens_cost_in_integers_is_the_decimal_sum_rounded_up(
    p_in: Decimal,
    p_out: Decimal,
    p_cached: Decimal | None,
    p_written: Decimal | None,
    input_tokens: int,
    output_tokens: int,
    cached: int,
    written: int,
) -> None:
    """``Pricing.rates`` sums in integers what the prices' ``Decimal`` sum makes: the same
    cost, rounded up once, for every price and count (the default context's 28 digits
    hold every sum of prices with six places and counts to 1e13 exactly)."""
    p = Pricing(input=p_in, output=p_out, cached_input=p_cached, cache_write=p_written)
    cached_price = p_in if p_cached is None else p_cached
    write_price = p_in if p_written is None else p_written
    terms = [max(0, input_tokens - cached - written) * p_in]
    if cached:
        terms.append(cached * cached_price)
    if written:
        terms.append(written * write_price)
    if output_tokens:
        terms.append(output_tokens * p_out)
    with decimal.localcontext() as exact:
        exact.prec = 100
        expected = math.ceil(sum(terms, Decimal(0)))
    assert tokens_cost(p, input_tokens, output_tokens, cached, written) == expected
    six_places = all(q is None or q == q.quantize(Decimal("1e-6")) for q in (p_cached, p_written))
    if six_places:  # within the default context's 28 digits: its sum is the same
        assert expected == math.ceil(sum(terms, Decimal(0)))


def test_a_pricings_rates_are_made_with_it_and_left_out_of_its_equality() -> None:
    p = Pricing(input=Decimal("0.15"), output=Decimal("0.6"), cache_write=Decimal("1.875"))
    assert (p.rates.input, p.rates.output, p.rates.scale) == (6, 24, 40)  # 3/20, 3/5
    assert (p.rates.cached_input, p.rates.cache_write) == (6, 75)  # the input's, 15/8
    assert dataclasses.replace(p, output=Decimal(1)).rates.output == 40
    assert p == Pricing(input=Decimal("0.15"), output=Decimal("0.6"), cache_write=Decimal("1.875"))
    assert "rates" not in repr(p)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(PRICE, PRICE, COUNT, COUNT)
def test_input_costs_are_tokens_cost_of_the_input_alone_and_with_the_output(
    p_in: Decimal, p_out: Decimal, input_tokens: int, output_tokens: int
) -> None:
    prices = Pricing(input=p_in, output=p_out)
    assert input_costs(prices, input_tokens, output_tokens) == (
        tokens_cost(prices, input_tokens),
        tokens_cost(prices, input_tokens, output_tokens),
    )


@settings(max_examples=1000, deadline=None, derandomize=True)
@given(st.tuples(COUNT, COUNT, COUNT, COUNT, COUNT))
def test_a_consistent_usage_is_kept_and_any_other_made_consistent(
    counts: tuple[int, int, int, int, int],
) -> None:
    """``sane`` returns a consistent usage as it is (its shortcut), any other with every
    count as the general rule makes it."""
    usage = Usage(*counts, estimated=True, credits=3)
    clamp = amounts.tokens
    input_tokens = clamp(max(counts[0], counts[2] + counts[3]))
    cached = min(clamp(counts[2]), input_tokens)
    written = min(clamp(counts[3]), input_tokens - cached)
    output = clamp(max(counts[1], counts[4]))
    reasoning = min(clamp(counts[4]), output)
    expected = (input_tokens, output, cached, written, reasoning)
    made = sane(usage)
    got = (
        made.input_tokens,
        made.output_tokens,
        made.cached_input_tokens,
        made.cache_write_tokens,
        made.reasoning_tokens,
    )
    assert got == expected and (made.estimated, made.credits) == (True, 3)
    assert (made is usage) == (expected == counts)


def test_output_includes_reasoning_once() -> None:
    usage = Usage(input_tokens=0, output_tokens=10, reasoning_tokens=4)
    assert cost(usage, pricing(output="1")) == 10


# Meter: helpers

INPUT, OUTPUT = "1", "2"


def route(
    *,
    cap: int | None = 100,
    input: str = INPUT,
    output: str = OUTPUT,
    limits: RouteLimits | None = None,
) -> Route:
    return Route(
        backend="echo",
        pricing=pricing(input=input, output=output),
        max_output_tokens=cap,
        limits=limits or RouteLimits(),
    )


def meter(
    store: Store,
    tasks: BackgroundTasks | None = None,
    *,
    lease_seconds: float = 30.0,
    default_max_output_tokens: int = 64,
) -> Meter:
    settings = MeteringSettings(
        lease_seconds=lease_seconds, default_max_output_tokens=default_max_output_tokens
    )
    return Meter(Holds(store.redis), tasks if tasks is not None else BackgroundTasks(), settings)


async def new_key(store: Store, balance: int = 100_000, limits: KeyLimits | None = None) -> ApiKey:
    key, _ = await store.create_key("k", balance=balance, limits=limits)
    return key


def reservation(inv: AgentInvocation, cap: int, p_in: int = 1, p_out: int = 2) -> int:
    return reserve_input(inv) * p_in + cap * p_out


async def usage_entries(store: Store, key: ApiKey) -> list[LedgerEntry]:
    return [e for e in await store.ledger(key.id) if e.kind == "usage"]


def deltas(n: int, text: str = "ab") -> list[Event]:
    return [TextDelta(text) for _ in range(n)]


# Meter.admit


async def test_admit_holds_input_and_output_cap_at_their_prices(fake_store: Store) -> None:
    m = meter(fake_store)
    key = await new_key(fake_store)
    inv = invocation("hello there " * 10)
    hold = await m.admit(inv, key, route(cap=100), "req_1")
    assert hold.record.credits == reservation(inv, 100)
    assert hold.record.tokens == reserve_input(inv) + 100
    assert (hold.output_cap, hold.invocation.max_output_tokens) == (100, 100)
    assert hold.invocation == dataclasses.replace(inv, max_output_tokens=100)
    assert hold.record.request_id == "req_1" and hold.record.key_id == key.id
    assert await fake_store.held(key.id) == hold.record.credits
    assert await fake_store.balance(key.id) == 100_000
    assert hold.admitted.balance == 100_000 and hold.admitted.held == hold.record.credits


@pytest.mark.parametrize(
    ("asked", "route_cap", "expected"),
    [(40, 100, 40), (400, 100, 100), (40, None, 40), (None, 100, 100), (None, None, 64)],
)
async def test_admit_output_cap(
    fake_store: Store, asked: int | None, route_cap: int | None, expected: int
) -> None:
    m = meter(fake_store, default_max_output_tokens=64)
    key = await new_key(fake_store)
    inv = invocation(max_output_tokens=asked)
    hold = await m.admit(inv, key, route(cap=route_cap), "r")
    assert hold.output_cap == hold.invocation.max_output_tokens == expected
    assert hold.record.credits == reservation(inv, expected)


async def test_admit_rounds_the_reservation_up(fake_store: Store) -> None:
    m = meter(fake_store)
    key = await new_key(fake_store)
    inv = invocation("x" * 7)
    hold = await m.admit(inv, key, route(cap=3, input="0.3", output="0.7"), "r")
    exact = Decimal(reserve_input(inv)) * Decimal("0.3") + 3 * Decimal("0.7")
    assert hold.record.credits == math.ceil(exact)


async def test_a_free_route_holds_nothing_and_needs_no_balance(fake_store: Store) -> None:
    m = meter(fake_store)
    key = await new_key(fake_store, 0)
    hold = await m.admit(invocation(), key, route(input="0", output="0"), "r")
    assert hold.record.credits == 0 and hold.output_cap == 100
    assert await fake_store.held(key.id) == 0


async def test_a_balance_below_the_maximum_cost_is_refused_with_402(fake_store: Store) -> None:
    m = meter(fake_store)
    inv = invocation()
    need = reservation(inv, 100)
    key = await new_key(fake_store, need + 100)
    await m.admit(invocation("x" * 40, max_output_tokens=100), key, route(), "first")
    held = await fake_store.held(key.id)
    assert held > 100
    with pytest.raises(InsufficientQuota) as info:
        await m.admit(inv, key, route(), "second")
    error = info.value
    assert (error.status, error.code) == (402, "insufficient_quota")
    assert f"has {need + 100} credits ({held} held" in error.message  # the balance
    assert f"may cost up to {need} credits:" in error.message  # the estimate
    assert await fake_store.held(key.id) == held  # nothing more held
    assert len(m._live) == 1


async def test_a_402_says_how_many_output_tokens_would_fit(fake_store: Store) -> None:
    """A small key gets told the largest max_tokens it can afford, and that one is admitted."""
    m = meter(fake_store, default_max_output_tokens=4096)
    inv = invocation("hello")
    key = await new_key(fake_store, 1_000)  # input 1, output 2 credits per token
    with pytest.raises(InsufficientQuota) as info:
        await m.admit(inv, key, route(cap=None), "r1")
    fits = (1_000 - reserve_input(inv)) // 2
    assert f"and 4096 output tokens. Ask for at most {fits} output tokens" in info.value.message
    asked = dataclasses.replace(inv, max_output_tokens=fits)
    hold = await m.admit(asked, key, route(cap=None), "r2")
    assert hold.record.credits <= 1_000 and hold.output_cap == fits
    with pytest.raises(InsufficientQuota, match="alone needs more than is free"):
        await m.admit(invocation("hello " * 100), key, route(cap=None), "r3")


async def test_a_budget_lowers_the_output_cap(fake_store: Store) -> None:
    m = meter(fake_store)
    key = await new_key(fake_store)
    inv = invocation()
    input_credits = reserve_input(inv)  # at 1 credit per token
    hold = await m.admit(inv, key, route(cap=100), "r", budget=input_credits + 21)
    assert hold.output_cap == hold.invocation.max_output_tokens == 10  # 21 // 2
    assert hold.record.credits == input_credits + 20
    roomy = await m.admit(inv, key, route(cap=100), "r", budget=10**6)
    assert roomy.output_cap == 100


@pytest.mark.parametrize("budget", [7, 10, 13, 50, 99])
async def test_a_budget_is_never_exceeded_with_fractional_prices(
    fake_store: Store, budget: int
) -> None:
    m = meter(fake_store)
    key = await new_key(fake_store)
    inv = invocation("abc")
    r = route(cap=1_000, input="0.3", output="0.7")
    hold = await m.admit(inv, key, r, "r", budget=budget)
    assert hold.record.credits <= budget
    one_more = Usage(reserve_input(inv), hold.output_cap + 1)
    assert cost(one_more, r.pricing) > budget  # the largest cap the budget allows


async def test_a_budget_too_small_is_refused(fake_store: Store) -> None:
    m = meter(fake_store)
    key = await new_key(fake_store)
    inv = invocation()
    input_credits = reserve_input(inv)
    for budget in (0, input_credits - 1, input_credits + 1):  # +1: no room for 1 token at 2
        with pytest.raises(InsufficientQuota) as info:
            await m.admit(inv, key, route(), "r", budget=budget)
        assert (info.value.status, info.value.code) == (402, "budget_too_small")
    assert await fake_store.held(key.id) == 0 and m._live == {}


@pytest.mark.parametrize("kind", ["daily", "monthly"])
async def test_a_spend_budget_refusal_is_402_budget_exceeded(fake_store: Store, kind: str) -> None:
    m = meter(fake_store)
    inv = invocation()
    need = reservation(inv, 100)
    limits = KeyLimits(daily_budget=need) if kind == "daily" else KeyLimits(monthly_budget=need)
    key = await new_key(fake_store, limits=limits)
    await m.admit(inv, key, route(), "first")
    with pytest.raises(InsufficientQuota) as info:
        await m.admit(inv, key, route(), "second")
    assert (info.value.status, info.value.code) == (402, "budget_exceeded")
    assert kind in info.value.message and str(need) in info.value.message


async def test_requests_per_minute_refusal_is_429_with_headers(fake_store: Store) -> None:
    m = meter(fake_store)
    key = await new_key(fake_store, limits=KeyLimits(rpm=2))
    first = await m.admit(invocation(), key, route(), "r")
    assert first.headers()["x-ratelimit-remaining-requests"] == "1"
    assert first.headers()["x-ratelimit-limit-requests"] == "2"
    await m.admit(invocation(), key, route(), "r")
    with pytest.raises(RateLimited) as info:
        await m.admit(invocation(), key, route(), "r")
    error = info.value
    assert error.status == 429
    retry = int(error.headers["Retry-After"])
    assert 1 <= retry <= 60
    assert error.headers["x-ratelimit-limit-requests"] == "2"
    assert error.headers["x-ratelimit-remaining-requests"] == "0"
    assert error.headers["x-ratelimit-reset-requests"] == f"{retry}s"
    assert "requests per minute" in error.message


async def test_tokens_per_minute_refusal_is_429_with_headers(fake_store: Store) -> None:
    m = meter(fake_store)
    inv = invocation()
    tokens = reserve_input(inv) + 100
    key = await new_key(fake_store, limits=KeyLimits(tpm=tokens + 10))
    first = await m.admit(inv, key, route(), "r")
    assert first.headers()["x-ratelimit-remaining-tokens"] == "10"
    with pytest.raises(RateLimited) as info:
        await m.admit(inv, key, route(), "r")
    assert info.value.headers["x-ratelimit-limit-tokens"] == str(tokens + 10)
    assert info.value.headers["x-ratelimit-remaining-tokens"] == "0"
    assert "Retry-After" in info.value.headers
    # A request small enough for what is left is admitted.
    await m.admit(invocation(""), key, route(cap=1), "r")


async def test_concurrency_refusal_is_429_with_retry_after(fake_store: Store) -> None:
    m = meter(fake_store)
    key = await new_key(fake_store, limits=KeyLimits(max_concurrent=1))
    await m.admit(invocation(), key, route(), "r")
    with pytest.raises(RateLimited) as info:
        await m.admit(invocation(), key, route(), "r")
    assert info.value.headers == {"Retry-After": "1"}
    assert "concurrent requests" in info.value.message


async def test_route_limits_are_shared_across_keys(fake_store: Store) -> None:
    m = meter(fake_store)
    shared = route(limits=RouteLimits(max_concurrent=1))
    a, b = await new_key(fake_store), await new_key(fake_store)
    hold = await m.admit(invocation(), a, shared, "r")
    assert hold.route_limited
    with pytest.raises(RateLimited):
        await m.admit(invocation(), b, shared, "r")
    assert await fake_store.held(b.id) == 0
    await m.admit(invocation(), b, route(), "r")  # the same agent on an unlimited route


# Meter.wrap and Tally


async def admitted(store: Store, cap: int = 100, **settings: Any) -> tuple[Meter, Hold, ApiKey]:
    m = meter(store, **settings)
    key = await new_key(store)
    hold = await m.admit(invocation(), key, route(cap=cap), "req_w")
    return m, hold, key


async def test_wrap_passes_events_and_tallies(fake_store: Store) -> None:
    m, hold, _ = await admitted(fake_store)
    events: list[Event] = [
        TextDelta("abc"),
        ReasoningDelta("de"),
        ToolCallStarted("c1", "fn"),
        ToolCallArgumentsDelta("c1", "{}"),
        Usage(9, 4),
        Completed(),
    ]
    priced = hold.priced(Usage(9, 4))  # the usage passed on carries its charge
    assert priced.credits == cost(Usage(9, 4), hold.pricing)
    assert await collect(m.wrap(batches(events), hold)) == [*events[:4], priced, Completed()]
    tally = hold.tally
    assert (tally.deltas, tally.weight, tally.completed) == (3, (3 + 2 + 2 + 2) / 4, True)
    assert tally.usage == priced
    assert tally.final(hold.invocation) == priced


async def test_wrap_counts_text_as_the_tally_does(fake_store: Store) -> None:
    # Text deltas are counted inline: the same figures as ``Tally.add``, in the same order.
    m, hold, _ = await admitted(fake_store)
    texts = ["ab", "héllo", "日本語", "", "x" * 7, "\u00e9t\u00e9 ", "tail"]
    events: list[Event] = [TextDelta(t) for t in texts]
    await collect(m.wrap(batches([*events, Usage(3, 9), Completed()]), hold))
    expected = Tally()
    for event in events:
        expected.add(event)
    assert (hold.tally.weight, hold.tally.deltas) == (expected.weight, expected.deltas)


async def test_a_counter_counts_a_mixed_batch_as_the_tally_does(fake_store: Store) -> None:
    # The inline count is kept in locals across a batch: it must go back to the tally
    # before every other event (which the tally then counts too) and at the batch's end.
    m, hold, _ = await admitted(fake_store)
    batch: Batch = (
        TextDelta("ab"),
        TextDelta("h\u00e9"),
        ReasoningDelta("think"),
        TextDelta("c"),
        ToolCallStarted("call_1", "f"),
        ToolCallArgumentsDelta("call_1", "{}"),
        TextDelta("\u65e5\u672c"),
        Usage(3, 9),
        TextDelta("d"),
    )
    count = m.counter(hold)
    out = count((TextDelta("first"),)) + count(batch) + count((TextDelta("last"), Completed()))
    expected = Tally()
    for event in out:
        expected.add(event)
    assert (hold.tally.weight, hold.tally.deltas, hold.tally.usage, hold.tally.completed) == (
        expected.weight,
        expected.deltas,
        expected.usage,
        True,
    )
    assert hold.tally.usage == hold.priced(Usage(3, 9))


@pytest.mark.parametrize(
    ("cap", "events"),
    [
        (100, [TextDelta("ab"), Usage(3, 1), TextDelta("c"), Completed()]),
        (100, [TextDelta("hello"), ReasoningDelta("r"), Completed()]),  # no usage: estimated
        (3, [*[TextDelta("w")] * 6, Completed()]),  # past the cap: ended there
        (3, [TextDelta("w"), (TextDelta("w"), TextDelta("w"), TextDelta("w")), Completed()]),
        (100, [TextDelta("a"), Failed(ServiceUnavailable("gone"))]),
    ],
    ids=["usage", "estimate", "cap", "cap-in-a-batch", "failed"],
)
async def test_the_contract_check_with_a_counter_passes_what_wrap_passes(
    fake_store: Store, cap: int, events: list[Event | Batch]
) -> None:
    read = 0

    async def upstream() -> AsyncIterator[Batch]:
        nonlocal read
        for item in events:
            read += 1
            yield item if isinstance(item, tuple) else (item,)

    m, hold, _ = await admitted(fake_store, cap=cap)
    wrapped = await collect(m.wrap(stream_contract.checked(upstream(), context()), hold))
    read_wrapped, read = read, 0
    tally = hold.tally
    counted = await collect(stream_contract.checked(upstream(), context(), count=m.counter(hold)))
    assert counted == wrapped
    assert read == read_wrapped  # the upstream was not read on after the cap
    assert hold.tally is not tally  # a fresh tally, as wrap's
    assert (hold.tally.weight, hold.tally.deltas, hold.tally.usage) == (
        tally.weight,
        tally.deltas,
        tally.usage,
    )


async def test_wrap_injects_an_estimate_when_no_usage_came(fake_store: Store) -> None:
    m, hold, _ = await admitted(fake_store)
    out = await collect(
        m.wrap(batches([TextDelta("hello"), TextDelta(" world"), Completed()]), hold)
    )
    estimate = Usage(estimate_input(hold.invocation), 3, estimated=True)  # ceil(11 / 4)
    assert out == [TextDelta("hello"), TextDelta(" world"), hold.priced(estimate), Completed()]
    assert hold.usage() == hold.priced(estimate)


async def test_wrap_ends_a_stream_at_the_output_cap(fake_store: Store) -> None:
    m, hold, _ = await admitted(fake_store, cap=3)
    read: list[Event] = []

    async def endless() -> AsyncIterator[Batch]:
        while True:
            event = TextDelta("w")
            read.append(event)
            yield (event,)

    out = await collect(m.wrap(endless(), hold))
    assert out[:3] == deltas(3, "w")
    assert out[3:] == [
        hold.priced(Usage(estimate_input(hold.invocation), 3, estimated=True)),
        Completed("length"),
    ]
    assert len(read) <= 4  # the upstream was not read on after the cap
    assert cost(hold.tally.final(hold.invocation), hold.pricing) <= hold.record.credits


async def test_wrap_lets_a_stream_of_exactly_the_cap_complete(fake_store: Store) -> None:
    m, hold, _ = await admitted(fake_store, cap=3)
    events = [*deltas(3), Usage(5, 3), Completed("length")]
    passed = [*deltas(3), hold.priced(Usage(5, 3)), Completed("length")]
    assert await collect(m.wrap(batches(events), hold)) == passed


async def test_wrap_starts_a_fresh_tally_per_attempt(fake_store: Store) -> None:
    m, hold, _ = await admitted(fake_store)
    await collect(m.wrap(batches([*deltas(5), Completed()]), hold))
    await collect(m.wrap(batches([TextDelta("x"), Usage(1, 1), Completed()]), hold))
    assert hold.tally.deltas == 1 and hold.tally.usage == hold.priced(Usage(1, 1))


async def test_the_first_attempt_counts_into_the_holds_own_tally(fake_store: Store) -> None:
    """Admission's tally, unused until then, is the first ``Counter``'s; the next
    attempt's is a fresh one, and the first attempt's stays as it counted."""
    m, hold, _ = await admitted(fake_store)
    own = hold.tally
    assert (own.deltas, own.weight, own.usage, own.completed) == (0, 0.0, None, False)
    first = m.counter(hold)
    assert first.tally is own and hold.tally is own
    first((TextDelta("ab"),))
    second = m.counter(hold)
    assert second.tally is hold.tally and hold.tally is not own
    assert (hold.tally.deltas, own.deltas) == (0, 1)


def test_admitted_hold_takes_the_fields_admission_sets_by_keyword_only() -> None:
    """``hold.admitted_hold``: keyword-only, each parameter a field of ``Hold`` (a field
    admission sets must be added there), the others as the class starts them."""
    made = inspect.signature(admitted_hold).parameters
    fields = {f.name: f for f in dataclasses.fields(Hold)}
    assert {p.kind for p in made.values()} == {inspect.Parameter.KEYWORD_ONLY}
    assert all(p.default is inspect.Parameter.empty for p in made.values())
    assert set(made) <= set(fields)
    given_ = {name: object() for name in made}
    hold = admitted_hold(**given_)  # type: ignore[arg-type]
    by_class = Hold(**given_)  # type: ignore[arg-type]
    for name, f in fields.items():
        if name in made:
            assert getattr(hold, name) is given_[name]
        elif f.default_factory is not dataclasses.MISSING:
            made_value, class_value = getattr(hold, name), getattr(by_class, name)
            assert type(made_value) is type(class_value)
            assert made_value is not class_value
        else:
            assert getattr(hold, name) == getattr(by_class, name) == f.default, name
    tally = hold.tally
    assert (tally.deltas, tally.weight, tally.usage, tally.completed) == (0, 0.0, None, False)


def tally(events: list[Event]) -> Tally:
    t = Tally()
    for event in events:
        t.add(event)
    return t


def test_final_is_the_upstream_usage_when_completed() -> None:
    inv = invocation()
    assert tally([*deltas(50), Usage(3, 2), Completed()]).final(inv) == Usage(3, 2)


def test_final_estimates_a_cut_stream_from_what_was_delivered() -> None:
    inv = invocation()
    one_char = tally(deltas(5, "a")).final(inv)  # at least one token per delta
    assert one_char == Usage(estimate_input(inv), 5, estimated=True)
    long = tally(deltas(2, "a" * 40)).final(inv)  # at least a token per 4 characters
    assert long == Usage(estimate_input(inv), 20, estimated=True)


def test_final_combines_partial_usage_with_delivered_output() -> None:
    inv = invocation()
    partial = tally([Usage(1_000, 2, cached_input_tokens=10), *deltas(5)]).final(inv)
    assert partial == Usage(1_000, 5, cached_input_tokens=10, estimated=True)
    # A partial report that already covers what was delivered stands as it is.
    assert tally([*deltas(2), Usage(7, 9)]).final(inv) == Usage(7, 9)


def test_final_of_an_upstream_that_never_answered_is_zero() -> None:
    inv = invocation()
    assert tally([]).final(inv) == Usage(estimated=True)
    answered = tally([]).final(inv, answered=True)
    assert answered == Usage(estimate_input(inv), 0, estimated=True)


# Meter.settle


async def test_settle_posts_once_with_the_tally(fake_store: Store) -> None:
    tasks = BackgroundTasks()
    m = meter(fake_store, tasks)
    key = await new_key(fake_store, 10_000)
    hold = await m.admit(invocation(), key, route(), "req_s")
    await collect(m.wrap(batches([TextDelta("a"), Usage(30, 7), Completed()]), hold))
    m.settle(hold, "echo")
    m.settle(hold, "echo")
    await tasks.drain()
    m.settle(hold, "echo")
    await tasks.drain()
    expected = cost(Usage(30, 7), hold.pricing)
    assert hold.settled and hold.credits == expected == 30 + 14
    assert await fake_store.balance(key.id) == 10_000 - expected
    assert await fake_store.held(key.id) == 0
    (entry,) = await usage_entries(fake_store, key)
    assert (entry.amount, entry.held, entry.backend) == (-expected, hold.record.credits, "echo")
    assert entry.request_id == "req_s" and entry.started_at == hold.record.started_at
    assert entry.usage == Usage(30, 7)
    assert m._live == {}


def test_ledger_fields_are_flat_with_the_token_counts_where_the_totals_read_them() -> None:
    rec = HoldRecord(
        credits=9, tokens=9, lease_until=2e9, request_id="req_1", key_id="k", agent="a",
        backend="", started_at=1.7e9,
    )  # fmt: skip
    fields = ledger_fields(rec, Usage(11, 22, 3, 4, 5, estimated=True), "echo")
    names, values = fields[::2], fields[1::2]
    assert names[:7] == ["kind", "request_id", "agent", "backend", "started_at", "at", "estimated"]
    assert values[:5] == ["usage", "req_1", "a", "echo", "1700000000.0"]
    assert values[6] == "1"
    # gateway_totals.ledger_tokens reads them in place: names 14, 16... 22, values after.
    assert fields[14:24:2] == list(TOKEN_FIELDS)
    assert ledger_tokens(fields) == ["11", "22", "3", "4", "5"]


async def test_a_settlement_is_queued_for_the_next_round_trip_without_a_task(
    fake_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = BackgroundTasks()
    m = meter(fake_store, tasks)
    key = await new_key(fake_store, 10_000)
    hold = await m.admit(invocation(), key, route(), "req_q")
    await collect(m.wrap(batches([TextDelta("a"), Usage(30, 7), Completed()]), hold))
    through_settle: list[object] = []
    original = Holds.settle

    async def counted(self: Holds, *args: Any, **kwargs: Any) -> bool:
        through_settle.append(args)
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(Holds, "settle", counted)
    m.settle(hold, "echo")
    assert len(tasks) == 1 and not isinstance(next(iter(tasks._tasks)), asyncio.Task)
    await tasks.drain()
    assert through_settle == [] and m._live == {}
    (entry,) = await usage_entries(fake_store, key)
    assert entry.amount == -cost(Usage(30, 7), hold.pricing) and entry.backend == "echo"
    assert await fake_store.balance(key.id) == 10_000 + entry.amount
    assert await fake_store.held(key.id) == 0


async def test_a_queued_settlement_redis_refused_is_written_through_settle(
    fake_store: Store,
) -> None:
    """Redis lost its scripts (a restart): the queued write fails with NOSCRIPT, and
    ``Holds.settle`` loads them and writes it, once."""
    tasks = BackgroundTasks()
    m = meter(fake_store, tasks)
    key = await new_key(fake_store, 10_000)
    hold = await m.admit(invocation(), key, route(), "req_noscript")
    await collect(m.wrap(batches([TextDelta("a"), Usage(30, 7), Completed()]), hold))
    await fake_store.redis.script_flush()
    m.settle(hold, "echo")
    await tasks.drain()
    (entry,) = await usage_entries(fake_store, key)
    assert entry.amount == -cost(Usage(30, 7), hold.pricing) and m._live == {}
    assert await fake_store.balance(key.id) == 10_000 + entry.amount
    assert await fake_store.held(key.id) == 0


async def test_wrap_reports_usage_before_completed_within_one_batch(fake_store: Store) -> None:
    m, hold, _ = await admitted(fake_store)

    async def one_read() -> AsyncIterator[Batch]:
        yield (TextDelta("hello"), Completed())

    (batch,) = [b async for b in m.wrap(one_read(), hold)]
    assert batch == (TextDelta("hello"), hold.usage(), Completed())
    assert hold.usage().estimated and hold.usage().output_tokens == 2


async def test_wrap_cuts_a_batch_at_the_output_cap(fake_store: Store) -> None:
    m, hold, _ = await admitted(fake_store, cap=3)

    async def one_read() -> AsyncIterator[Batch]:
        yield (*deltas(5, "w"), Usage(1, 5), Completed())

    (batch,) = [b async for b in m.wrap(one_read(), hold)]
    assert batch == (
        *deltas(3, "w"),
        hold.priced(Usage(estimate_input(hold.invocation), 3, estimated=True)),
        Completed("length"),
    )


async def test_settle_of_a_stream_the_client_left_is_estimated(fake_store: Store) -> None:
    tasks = BackgroundTasks()
    m = meter(fake_store, tasks)
    key = await new_key(fake_store, 10_000)
    hold = await m.admit(invocation(), key, route(), "r")
    wrapped = m.wrap(batches([*deltas(10), Usage(3, 10), Completed()]), hold)
    seen = [await anext(wrapped) for _ in range(4)]
    await close(wrapped)
    assert len(seen) == 4
    m.settle(hold, "echo")
    await tasks.drain()
    (entry,) = await usage_entries(fake_store, key)
    assert entry.usage is not None and entry.usage.estimated
    assert entry.usage.output_tokens >= 4
    assert entry.amount == -cost(entry.usage, hold.pricing) < 0


async def test_settle_of_a_request_that_never_ran_only_releases(fake_store: Store) -> None:
    tasks = BackgroundTasks()
    m = meter(fake_store, tasks)
    key = await new_key(fake_store, 10_000)
    hold = await m.admit(invocation(), key, route(), "r")
    m.settle(hold, "")  # as the pipeline does when no backend answered
    await tasks.drain()
    assert await fake_store.held(key.id) == 0 and await fake_store.balance(key.id) == 10_000
    assert await usage_entries(fake_store, key) == [] and m._live == {}


@pytest.mark.parametrize("reached_redis", [False, True])
async def test_a_client_that_leaves_during_admission_leaves_nothing_held(
    fake_store: Store, reached_redis: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled before or after its admission reached Redis: the hold is released at
    once, never through the outbox (where it would delay every later settlement)."""
    tasks = BackgroundTasks()
    m = meter(fake_store, tasks)
    key = await new_key(fake_store, 10_000)
    m.settle(await m.admit(invocation(), key, route(), "first"), "")  # loads the scripts
    await tasks.drain()
    write = pipelining._write
    answered: list[list[Any]] = []

    def client_leaves_once_sent(*args: Any) -> asyncio.Future[list[Any]]:
        admitting.cancel()
        answer = write(*args)
        answer.add_done_callback(lambda answer: answered.append(answer.result()))
        return answer

    if reached_redis:
        monkeypatch.setattr(pipelining, "_write", client_leaves_once_sent)
    admitting = asyncio.ensure_future(m.admit(invocation(), key, route(), "r"))
    if not reached_redis:
        await asyncio.sleep(0)
        admitting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await admitting
    assert len(m.outbox) == 0
    await tasks.drain()
    assert bool(answered) == reached_redis  # the admission reached Redis, or never got there
    assert await fake_store.held(key.id) == 0 and await fake_store.balance(key.id) == 10_000
    assert await fake_store.redis.hlen(schema.holds(key.id)) == 0


async def test_settle_retries_while_the_store_is_unavailable(
    fake_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = BackgroundTasks()
    m = meter(fake_store, tasks)
    key = await new_key(fake_store, 10_000)
    hold = await m.admit(invocation(), key, route(), "r")
    await collect(m.wrap(batches([TextDelta("a"), Usage(3, 1), Completed()]), hold))
    calls = fail_first(monkeypatch, 2)
    m.settle(hold, "echo")
    await tasks.drain()
    assert calls == [True, True, False]
    assert await fake_store.balance(key.id) == 10_000 - 5
    assert len(await usage_entries(fake_store, key)) == 1 and m._live == {}


def no_queued_write(*args: Any, **kwargs: Any) -> None:
    """``Holds.settle_soon`` declining (as on a cluster): settlements go through ``settle``."""
    return None


def fail_first(monkeypatch: pytest.MonkeyPatch, failures: int) -> list[bool]:
    """Make ``Holds.settle`` raise ServiceUnavailable ``failures`` times; the calls made."""
    calls: list[bool] = []
    original = Holds.settle
    sleep = asyncio.sleep

    async def flaky(self: Holds, *args: Any, **kwargs: Any) -> bool:
        calls.append(len(calls) < failures)
        if calls[-1]:
            raise ServiceUnavailable("down")
        return await original(self, *args, **kwargs)

    async def no_wait(seconds: float) -> None:
        await sleep(0)

    monkeypatch.setattr(Holds, "settle", flaky)
    monkeypatch.setattr(Holds, "settle_soon", no_queued_write)  # every write through settle
    monkeypatch.setattr(asyncio, "sleep", no_wait)  # the retries' back-off
    return calls


# Leases: renew and reap


async def test_the_reaper_settles_a_dead_process_hold_at_its_progress(fake_store: Store) -> None:
    dead = meter(fake_store, lease_seconds=0.2)
    reaper = meter(fake_store)
    key = await new_key(fake_store, 10_000)
    hold = await dead.admit(invocation(), key, route(), "req_dead")
    wrapped = dead.wrap(batches([*deltas(20), Completed()]), hold)
    for _ in range(6):
        await anext(wrapped)
    await dead.renew()  # the last progress it recorded: 6 tokens out
    for _ in range(3):
        await anext(wrapped)  # never recorded: the process dies now
    assert await reaper.reap() == 0  # the lease runs yet
    await asyncio.sleep(0.25)
    assert await reaper.reap() == 1
    assert await reaper.reap() == 0
    (entry,) = await usage_entries(fake_store, key)
    progress = Usage(estimate_input(hold.invocation), 6)
    assert entry.reaped and entry.usage == dataclasses.replace(progress, estimated=True)
    assert entry.amount == -cost(progress, hold.pricing)
    assert entry.request_id == "req_dead" and entry.held == hold.record.credits
    assert await fake_store.held(key.id) == 0
    assert await fake_store.balance(key.id) == 10_000 + entry.amount
    ledger = await fake_store.ledger(key.id)
    assert sum(e.amount for e in ledger) == await fake_store.balance(key.id)


async def test_a_hold_never_renewed_is_reaped_at_its_input(fake_store: Store) -> None:
    dead = meter(fake_store, lease_seconds=0.05)
    key = await new_key(fake_store, 10_000)
    hold = await dead.admit(invocation(), key, route(), "r")
    await asyncio.sleep(0.1)
    assert await meter(fake_store).reap() == 1
    (entry,) = await usage_entries(fake_store, key)
    assert entry.amount == -hold.record.progress_credits < 0
    assert entry.usage is not None and entry.usage.output_tokens == 0


async def test_a_live_renewed_hold_is_not_reaped(fake_store: Store) -> None:
    tasks = BackgroundTasks()
    live = meter(fake_store, tasks, lease_seconds=0.15)
    other = meter(fake_store)
    key = await new_key(fake_store, 10_000)
    hold = await live.admit(invocation(), key, route(), "r")
    await collect(live.wrap(batches([TextDelta("a"), Usage(3, 1)]), hold))
    for _ in range(3):
        await asyncio.sleep(0.08)
        await live.renew()
        assert await other.reap() == 0
    assert hold.record.lease_until > time.time()
    # Past its lease, a hold still live in its own process is not reaped there.
    await asyncio.sleep(0.2)
    assert await live.reap() == 0
    live.settle(hold, "echo")
    await tasks.drain()
    assert await other.reap() == 0
    assert len(await usage_entries(fake_store, key)) == 1


async def test_renew_skips_settled_holds_and_never_resurrects_them(fake_store: Store) -> None:
    tasks = BackgroundTasks()
    m = meter(fake_store, tasks)
    key = await new_key(fake_store, 10_000)
    hold = await m.admit(invocation(), key, route(), "r")
    settled_elsewhere = dataclasses.replace(hold.record)
    reaped = await m._holds.settle(Charge(settled_elsewhere, hold.charge_id, 1, 1, {}, route=False))
    assert reaped
    await m.renew()
    assert await fake_store.redis.hget(schema.holds(key.id), hold.charge_id) is None
    assert await fake_store.held(key.id) == 0
    m.settle(hold, "echo")
    await tasks.drain()
    assert await fake_store.balance(key.id) == 10_000 - 1  # charged once


def test_a_team_keys_402_says_to_credit_the_team_not_the_key() -> None:
    """A key in a team cannot be credited (the CLI and admin API refuse it), so the 402's
    advice names the team; a lone key's still names the key."""
    from gateway.metering.refusals import too_poor
    from gateway.route import Pricing
    from gateway.store.holds import Refusal

    pricing = Pricing(input=Decimal(1), output=Decimal(2))
    team = too_poor(Refusal("balance", 215, 0, whose="team"), 273, 73, 100, pricing)
    assert "this key's team has 215 credits" in team.message
    assert team.message.endswith("or add credits to the team.")
    alone = too_poor(Refusal("balance", 215, 0), 273, 73, 100, pricing)
    assert alone.message.endswith("or add credits to the key.")


def _rate_limits_as_made_before(
    limits: KeyLimits, admitted: Admitted, started_at: float
) -> dict[str, str]:
    """``headers.rate_limits`` as it read before its texts were kept: each made per call."""
    out: dict[str, str] = {}
    reset = f"{60 - int(started_at % 60)}s"
    if limits.rpm:
        out["x-ratelimit-limit-requests"] = str(limits.rpm)
        out["x-ratelimit-remaining-requests"] = str(max(0, limits.rpm - admitted.requests))
        out["x-ratelimit-reset-requests"] = reset
    if limits.tpm:
        out["x-ratelimit-limit-tokens"] = str(limits.tpm)
        out["x-ratelimit-remaining-tokens"] = str(max(0, limits.tpm - admitted.tokens))
        out["x-ratelimit-reset-tokens"] = reset
    return out


COUNTS = st.integers(min_value=0, max_value=amounts.MAX_TOKENS)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.builds(KeyLimits, rpm=COUNTS | st.just(0), tpm=COUNTS | st.just(0)),
    st.builds(Admitted, balance=st.integers(), held=st.integers(), requests=COUNTS, tokens=COUNTS),
    st.floats(min_value=-1e12, max_value=1e12, allow_nan=False)
    | st.sampled_from([0.0, 59.99999999, -1e-20]),
)
def test_rate_limit_headers_are_the_texts_made_per_request(
    limits: KeyLimits, admitted: Admitted, started_at: float
) -> None:
    """``headers.rate_limits`` with its limit and reset texts kept: the same headers, in
    the same order, as made afresh each time; a fresh dict each call."""
    made = rate_limits(limits, admitted, started_at)
    assert list(made.items()) == list(
        _rate_limits_as_made_before(limits, admitted, started_at).items()
    )
    assert rate_limits(limits, admitted, started_at) is not made
