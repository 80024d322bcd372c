"""Leases: this process renews its holds with each request's progress, and settles
the holds of processes that died (the reaper); settlement is idempotent, so nothing
is charged twice."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time

from gateway.errors import ServiceUnavailable
from gateway.events import Usage
from gateway.metering.alerts import Alerter
from gateway.metering.health import StoreHealth
from gateway.metering.hold import Hold
from gateway.metering.settlement import ledger_fields
from gateway.settings import MeteringSettings
from gateway.store.holds import Holds, make_charge

log = logging.getLogger("gateway.metering")

RENEW_RETRY_SECONDS = 1.0  # lease upkeep that failed is tried again this soon


class Leases:
    def __init__(
        self,
        holds: Holds,
        settings: MeteringSettings,
        live: dict[str, Hold],
        health: StoreHealth,
        alerter: Alerter | None = None,
    ) -> None:
        self._holds = holds
        self._alerter = alerter
        self._settings = settings
        self._live = live
        self._health = health

    async def keep(self) -> None:
        """Run forever: renew this process's holds, and settle holds of dead processes."""
        lease = self._settings.lease_seconds
        wait = lease / 3
        while True:
            await asyncio.sleep(wait * random.uniform(0.9, 1.1))
            try:
                await self.renew()
                await self.reap()
                wait = lease / 3
            except ServiceUnavailable:
                self._health.failed()
                log.warning("lease upkeep skipped: store unavailable")
                wait = min(lease / 3, RENEW_RETRY_SECONDS)  # renew as soon as it is back

    async def renew(self) -> None:
        until = time.time() + self._settings.lease_seconds
        leases = []
        for hold in list(self._live.values()):
            if hold.settled and hold.final is None:
                continue  # its settlement is being written now
            # A hold admitted without a reservation (fail_open) is renewed too: its
            # admission may have reached Redis with only the answer lost, and a hold
            # left to expire would be reaped, and charged, at its input estimate.
            # A settlement waiting in the outbox renews with its final usage: should a
            # reaper settle it first, it charges exactly what the request cost.
            usage = hold.final or hold.usage(answered=True)
            record = dataclasses.replace(
                hold.record,
                backend=hold.backend,
                lease_until=until,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                progress_credits=usage.credits or 0,  # = the settlement's, if final
            )
            if hold.final is None:
                hold.record = record  # a queued settlement keeps the record it was given
            leases.append((hold.charge_id, record))
        if leases:
            await self._holds.renew(leases)

    async def reap(self) -> int:
        """Settle holds whose lease ran out (their process died); the number settled.

        Not within one lease period of a store failure this process saw: live
        processes could not renew while the store was away, and get that long to.
        """
        if self._health.failed_within(self._settings.lease_seconds):
            return 0
        now = time.time()
        settled = 0
        for key_id, charge_id, record in await self._holds.expired(now):
            if record is None:
                await self._holds.forget_lease(key_id, charge_id)
                continue
            if record.lease_until > now or charge_id in self._live:
                continue
            usage = Usage(record.input_tokens, record.output_tokens, estimated=True)
            fields = ledger_fields(record, usage, record.backend)
            fields += ("reaped", "1")
            credits = min(record.progress_credits, record.credits)  # never beyond the hold
            charge = make_charge(
                record=record,
                charge_id=charge_id,
                credits=credits,
                tokens=usage.total_tokens,
                fields=fields,
                route=True,
                failed=True,
            )
            if await self._holds.settle(charge):
                settled += 1
                if credits and self._alerter is not None:  # as a live settlement checks
                    self._alerter.reaped(record.key_id, record.team)
                log.warning(
                    "settled request %s of a process that died (%d credits)",
                    record.request_id,
                    credits,
                )
        return settled
