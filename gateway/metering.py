"""Metering: price a request's usage in credits and settle it in the ledger.

Rounding rule: the exact cost (tokens of each kind times their price in
credits per token, summed in decimal without rounding) is rounded **up** to a
whole credit once per request. A request is never charged more than one credit
above its exact cost.

The metering filter watches a request's events; when the stream ends for any
reason (completed, failed, or closed because the client went away) it settles
the usage the upstream reported, or an estimate from what was actually
streamed (marked ``estimated``), in a background task that a client
disconnect cannot cancel.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator

from gateway import tokens
from gateway.errors import ServiceUnavailable
from gateway.events import (
    Completed,
    Event,
    ReasoningDelta,
    TextDelta,
    ToolCallArgumentsDelta,
    ToolCallStarted,
    Usage,
)
from gateway.plugin import CallContext
from gateway.route import Pricing
from gateway.store import Store
from gateway.store.records import Charge
from gateway.tasks import BackgroundTasks

log = logging.getLogger(__name__)

SETTLE_ATTEMPTS = 5


def cost(usage: Usage, pricing: Pricing) -> int:
    """The credits ``usage`` costs at ``pricing``, rounded up to a whole credit."""
    cached_price = pricing.input if pricing.cached_input is None else pricing.cached_input
    write_price = pricing.input if pricing.cache_write is None else pricing.cache_write
    uncached = max(0, usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens)
    exact = (
        uncached * pricing.input
        + usage.cached_input_tokens * cached_price
        + usage.cache_write_tokens * write_price
        + usage.output_tokens * pricing.output
    )
    return math.ceil(exact)


class _Tally:
    """What one stream has delivered, to estimate usage the upstream did not report."""

    __slots__ = ("chars", "deltas", "usage")

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.chars = 0
        self.deltas = 0

    def add(self, event: Event) -> None:
        if isinstance(event, TextDelta | ReasoningDelta):
            self.chars += len(event.text)
            self.deltas += 1
        elif isinstance(event, ToolCallArgumentsDelta):
            self.chars += len(event.arguments)
            self.deltas += 1
        elif isinstance(event, ToolCallStarted):
            self.chars += len(event.name)
        elif isinstance(event, Usage):
            self.usage = event

    def final(self, ctx: CallContext, *, answered: bool = False) -> Usage:
        if self.usage is not None:
            return self.usage
        if not (answered or self.deltas):  # the upstream failed before answering
            return Usage(estimated=True)
        return Usage(
            input_tokens=tokens.estimate_input(ctx.invocation),
            output_tokens=tokens.estimate_output(self.chars, self.deltas),
            estimated=True,
        )


class Meter:
    """The metering filter: settles each request's usage exactly once."""

    def __init__(self, store: Store, tasks: BackgroundTasks) -> None:
        self._store = store
        self._tasks = tasks

    async def wrap(self, events: AsyncIterator[Event], ctx: CallContext) -> AsyncIterator[Event]:
        tally = _Tally()
        try:
            async for event in events:
                if isinstance(event, Completed) and tally.usage is None:
                    tally.usage = tally.final(ctx, answered=True)  # every answer reports its usage
                    yield tally.usage
                tally.add(event)
                yield event
        finally:
            usage = tally.final(ctx)
            if usage.total_tokens:
                charge = Charge(
                    entry_id=ctx.charge_id,
                    request_id=ctx.request_id,
                    key_id=ctx.key_id,
                    agent=ctx.agent,
                    backend=ctx.backend,
                    usage=usage,
                    credits=cost(usage, ctx.route.pricing),
                    at=time.time(),
                )
                self._tasks.spawn(self._settle(charge), name=f"settle {ctx.request_id}")

    async def _settle(self, charge: Charge) -> None:
        for attempt in range(SETTLE_ATTEMPTS):
            try:
                await self._store.settle(charge)
                return
            except ServiceUnavailable:
                await asyncio.sleep(0.2 * 2**attempt)
        log.error(
            "could not settle request %s (key %s, %d credits): store unavailable",
            charge.request_id,
            charge.key_id,
            charge.credits,
        )
