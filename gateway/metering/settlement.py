"""Settlement: charge the true cost, release the rest of the hold and append the ledger
entry, once per request, in a background task a client disconnect cannot cancel."""

from __future__ import annotations

import logging
import time

from gateway import metrics
from gateway.errors import ServiceUnavailable
from gateway.events import Usage
from gateway.metering.alerts import Alerter
from gateway.metering.health import StoreHealth
from gateway.metering.hold import Hold
from gateway.metering.pricing import cost
from gateway.outbox import Outbox, Pending
from gateway.store.holds import HoldRecord, Holds
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
        self._alerter = alerter if alerter is not None and alerter.on else None
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
        self._tasks.spawn(
            self._settle(hold, usage, backend, unbilled), name=f"settle {hold.charge_id}"
        )

    async def _settle(self, hold: Hold, usage: Usage, backend: str, unbilled: int) -> None:
        record = hold.record
        fields = ledger_fields(record, usage, backend)
        if unbilled:
            fields["unbilled"] = str(unbilled)
        credits = hold.credits or 0

        async def write() -> None:
            now = await self._holds.settle(
                record,
                hold.charge_id,
                credits,
                usage.total_tokens,
                fields,
                route=hold.route_limited,
                failed=not hold.tally.completed,
            )
            self._live.pop(hold.charge_id, None)
            if now and credits and self._alerter is not None:
                self._alerter.settled(record.key_id, record.team, hold.key_limits, hold.team_limits)

        if not len(self._outbox):  # else it queues behind the others: settlements stay in order
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
                f"{credits} credits)",
                write,
                dropped=lambda: self._forget(hold.charge_id),
            )
        )

    def _forget(self, charge_id: str) -> None:
        self._live.pop(charge_id, None)


def ledger_fields(record: HoldRecord, usage: Usage, backend: str) -> dict[str, str]:
    """The fields of a request's ledger entry (``gateway.store.records.LedgerEntry``)."""
    return {
        "kind": "usage",
        "request_id": record.request_id,
        "agent": record.agent,
        "backend": backend,
        "started_at": repr(record.started_at),
        "at": repr(time.time()),
        "estimated": "1" if usage.estimated else "0",
        "input_tokens": str(usage.input_tokens),
        "output_tokens": str(usage.output_tokens),
        "cached_input_tokens": str(usage.cached_input_tokens),
        "cache_write_tokens": str(usage.cache_write_tokens),
        "reasoning_tokens": str(usage.reasoning_tokens),
    }
