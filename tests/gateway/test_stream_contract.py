"""gateway.stream_contract: a backend held to the stream contract and its time limits."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from gateway.errors import (
    RateLimited,
    UpstreamError,
)
from gateway.events import Batch, Completed, Event, Failed, TextDelta, Usage
from gateway.stream_contract import Interrupts, checked
from tests.gateway.factories import collect, context, stream

CONFIG = """
backends:
  scripted: {type: echo}
routes:
  echo: {backend: scripted, pricing: {input: 1, output: 1}, max_output_tokens: 100}
  free: {backend: scripted}
  other: {backend: scripted}
"""


async def test_checked_passes_a_well_formed_stream() -> None:
    events: list[Event] = [TextDelta("a"), Usage(1, 1), Completed()]
    assert await collect(checked(stream(events), context())) == events


async def test_checked_turns_an_exception_into_upstream_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken() -> AsyncIterator[Batch]:
        yield (TextDelta("a"),)
        raise RuntimeError("bug in a plugin")

    with caplog.at_level(logging.ERROR, logger="gateway.pipeline"):
        out = await collect(checked(broken(), context(request_id="req_x")))
    assert out[0] == TextDelta("a")
    assert isinstance(out[1], Failed) and type(out[1].error) is UpstreamError
    assert "bug in a plugin" not in out[1].error.message  # internals stay in the log
    assert len(out) == 2
    assert "req_x" in caplog.text and "bug in a plugin" in caplog.text


async def test_checked_passes_a_raised_gateway_error_through() -> None:
    async def limited() -> AsyncIterator[Batch]:
        raise RateLimited("slow down")
        yield (Completed(),)  # pragma: no cover

    (out,) = await collect(checked(limited(), context()))
    assert isinstance(out, Failed) and isinstance(out.error, RateLimited)


async def test_checked_fails_a_stream_without_terminal() -> None:
    out = await collect(checked(stream([TextDelta("a"), Usage(1, 1)]), context()))
    assert out[:2] == [TextDelta("a"), Usage(1, 1)]
    assert isinstance(out[2], Failed) and isinstance(out[2].error, UpstreamError)
    assert len(out) == 3


async def test_checked_drops_events_after_the_terminal() -> None:
    after_completed: list[Event] = [Completed(), TextDelta("late"), Completed("length")]
    assert await collect(checked(stream(after_completed), context())) == [Completed()]
    failed = Failed(UpstreamError("x"))
    assert await collect(checked(stream([failed, TextDelta("late")]), context())) == [failed]


async def test_checked_enforces_first_byte_idle_and_total_limits() -> None:
    import asyncio

    from gateway.errors import UpstreamTimeout
    from gateway.settings import Timeouts

    async def slow(first: float, gap: float, count: int = 3) -> AsyncIterator[Batch]:
        await asyncio.sleep(first)
        for i in range(count):
            if i:
                await asyncio.sleep(gap)
            yield (TextDelta(str(i)),)
        yield (Completed(),)

    limits = Timeouts(first_byte=0.05, idle=0.05, total=None)
    (late,) = await collect(checked(slow(0.2, 0), context(), limits))
    assert isinstance(late, Failed) and isinstance(late.error, UpstreamTimeout)
    assert "answer" in late.error.message

    idle = await collect(checked(slow(0, 0.2), context(), limits))
    assert idle[0] == TextDelta("0") and isinstance(idle[-1], Failed)
    assert "next chunk" in idle[-1].error.message

    total = Timeouts(first_byte=1, idle=1, total=0.15)
    cut = await collect(checked(slow(0, 0.06, count=10), context(), total))
    assert 1 < len(cut) < 10 and isinstance(cut[-1], Failed)

    fine = await collect(checked(slow(0.01, 0.01), context(), Timeouts(0.5, 0.5, 2)))
    assert fine[-1] == Completed()


async def test_interrupts_end_a_waiting_stream_with_a_terminal_event() -> None:
    import asyncio

    from gateway.errors import ServiceUnavailable

    async def waits_forever() -> AsyncIterator[Batch]:
        yield (TextDelta("a"),)
        await asyncio.sleep(60)
        yield (Completed(),)

    interrupts = Interrupts()
    held = checked(waits_forever(), context(), interrupts=interrupts)
    assert await anext(held) == (TextDelta("a"),)
    later = asyncio.get_running_loop().call_later(0.05, interrupts.interrupt_all)
    (last,) = await collect(held)
    later.cancel()
    assert isinstance(last, Failed) and isinstance(last.error, ServiceUnavailable)
    assert not interrupts.waits


async def test_checked_passes_batches_and_cuts_one_after_its_terminal_event() -> None:
    async def backend() -> AsyncIterator[Batch]:
        yield (TextDelta("a"),)  # alone: a batch of one
        yield ()  # nothing: dropped
        yield (TextDelta("b"), Completed(), TextDelta("late"))
        yield (TextDelta("never read"),)

    out = [batch async for batch in checked(backend(), context())]
    assert out == [(TextDelta("a"),), (TextDelta("b"), Completed())]


@pytest.mark.parametrize("wrong", [TextDelta("a"), [TextDelta("a")]])
async def test_checked_refuses_anything_but_a_batch(
    wrong: object, caplog: pytest.LogCaptureFixture
) -> None:
    async def backend() -> AsyncIterator[object]:
        yield wrong

    out = [batch async for batch in checked(backend(), context())]  # type: ignore[arg-type]
    ((failed,),) = out
    assert isinstance(failed, Failed) and isinstance(failed.error, UpstreamError)
    assert "not a batch" in caplog.text
