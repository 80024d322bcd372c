"""Settlement: charge the true cost, release the rest of the hold and append the ledger
entry, once per request, in a background task a client disconnect cannot cancel."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from gateway import metrics
from gateway.errors import ServiceUnavailable
from gateway.events import Usage
from gateway.metering.alerts import Alerter
from gateway.metering.health import StoreHealth
from gateway.metering.hold import Hold
from gateway.metering.pricing import cost
from gateway.outbox import Outbox, Pending
from gateway.store.holds import Charge, HoldRecord, Holds, float_text, make_charge
from gateway.tasks import BackgroundTasks

log = logging.getLogger("gateway.metering")


class Settlement:
    def __init__(
        self,
        holds: Holds,
        tasks: BackgroundTasks,
        outbox: Outbox,
        live: dict[str, Hold],
        health: StoreHealth,
        alerter: Alerter | None = None,
    ) -> None:
        self._holds = holds
        self._alerter = alerter  # its settings may change on a reload: asked each time
        self._tasks = tasks
        self._outbox = outbox
        self._live = live
        self._health = health

    def settle(self, hold: Hold, backend: str) -> None:
        """Settle ``hold`` once, in the background, with what its stream delivered
        (for a request that never answered: nothing, so only its hold is released)."""
        if hold.settled:
            return
        hold.settled = True
        usage = hold.usage()
        credits = hold.credits = usage.credits or 0
        # Below the hold the charge is the cost; only at it may the cost have been more.
        unbilled = cost(usage, hold.pricing) - credits if credits >= hold.record.credits else 0
        metrics.settled(hold.record.agent, usage, credits, unbilled)
        if unbilled:
            log.warning(
                "request %s reported usage costing %d credits beyond its hold of %d: "
                "charged the hold (the excess is recorded as unbilled)",
                hold.record.request_id,
                unbilled,
                credits,
            )
        fields = ledger_fields(hold.record, usage, backend)
        if unbilled:
            fields += ("unbilled", str(unbilled))
        charge = make_charge(  # by keyword: credits and tokens are both ints
            record=hold.record,
            charge_id=hold.charge_id,
            credits=credits,
            tokens=usage.total_tokens,
            fields=fields,
            route=hold.route_limited,
            failed=not hold.tally.completed,
        )
        if not len(self._outbox):  # else it queues behind the others: settlements stay in order
            # The usual case: queued for the store's next round trip and finished in a
            # callback, without a task and the coroutines of ``_settle``.
            soon = self._holds.settle_soon(charge)
            if soon is not None:
                sent, settled = soon
                # One done callback does both: the settlement's and the tracking's.
                sent.add_done_callback(partial(self._sent, hold, usage, charge, settled))
                self._tasks.hold(sent)
                return
        self._spawn(hold, usage, charge)

    def _sent(
        self,
        hold: Hold,
        usage: Usage,
        charge: Charge,
        settled: Callable[[list[Any]], bool],
        sent: asyncio.Future[list[Any]],
    ) -> None:
        try:
            if not sent.cancelled() and sent.exception() is None:
                self._written(hold, settled(sent.result()))
            else:  # what the queued write could not do (NOSCRIPT, the store away...), _settle does
                self._spawn(hold, usage, charge)
        finally:
            self._tasks.release(sent)  # held by ``settle``: tracked until here

    def _spawn(self, hold: Hold, usage: Usage, charge: Charge) -> None:
        self._tasks.spawn(self._settle(hold, usage, charge), name=f"settle {hold.charge_id}")

    def _written(self, hold: Hold, now: bool) -> None:
        """The settlement is in Redis (``now``: by this write, not an earlier one)."""
        self._live.pop(hold.charge_id, None)
        if now and hold.credits and self._alerter is not None:
            record = hold.record
            self._alerter.settled(record.key_id, record.team, hold.key_limits, hold.team_limits)

    async def _settle(self, hold: Hold, usage: Usage, charge: Charge) -> None:
        record = hold.record

        async def write() -> None:
            self._written(hold, await self._holds.settle(charge))

        if not len(self._outbox):
            try:
                await write()
                return
            except ServiceUnavailable:
                self._health.failed()
        hold.final = usage  # renewals carry the final usage from now on
        self._outbox.put(
            Pending(
                hold.charge_id,
                f"settlement of request {record.request_id} (key {record.key_id}, "
                f"{charge.credits} credits)",
                write,
                dropped=lambda: self._forget(hold.charge_id),
            )
        )

    def _forget(self, charge_id: str) -> None:
        self._live.pop(charge_id, None)


def ledger_fields(record: HoldRecord, usage: Usage, backend: str) -> list[str]:
    """The fields of a request's ledger entry (``gateway.store.records.LedgerEntry``), flat:
    name, value, name, value..., in the entry's order, as the settlement script takes them
    (``holds.Charge.fields``). A field the caller adds goes at the end:
    ``fields += ("unbilled", "5")``.

    Flat rather than a dict: a dict had to be unfolded into this list at every settlement
    (``holds.ledger_argument``); ``gateway_totals.ledger_tokens`` reads the token counts
    where this order puts them."""
    # fmt: off
    return [
        "kind", "usage",
        "request_id", record.request_id,
        "agent", record.agent,
        "backend", backend,
        "started_at", float_text(record.started_at),
        "at", float_text(time.time()),
        "estimated", "1" if usage.estimated else "0",
        "input_tokens", str(usage.input_tokens),
        "output_tokens", str(usage.output_tokens),
        "cached_input_tokens", str(usage.cached_input_tokens),
        "cache_write_tokens", str(usage.cache_write_tokens),
        "reasoning_tokens", str(usage.reasoning_tokens),
    ]
    # fmt: on
