"""The meter: admission, the metered stream, settlement and leases, sharing the holds
live in this process, the outbox and what the store last did."""

from __future__ import annotations

from gateway.metering.admission import Admission
from gateway.metering.alerts import Alerter
from gateway.metering.health import StoreHealth
from gateway.metering.hold import Hold
from gateway.metering.leases import Leases
from gateway.metering.settlement import Settlement
from gateway.metering.stream import Counter, metered
from gateway.metering.webhook import Deliveries
from gateway.outbox import Outbox
from gateway.settings import AlertSettings, MeteringSettings
from gateway.store.alerts import Alerts
from gateway.store.holds import HoldRecord, Holds
from gateway.tasks import BackgroundTasks


class Meter:
    """``admit`` a request, ``wrap`` its stream (or ``counter`` it), ``settle`` it;
    ``keep_leases`` and ``deliveries.run`` run for the life of the process. The
    per-request entry points are the parts' own methods, bound here once: the meter
    adds no call of its own to a request."""

    def __init__(
        self,
        holds: Holds,
        tasks: BackgroundTasks,
        settings: MeteringSettings,
        *,
        fail_open: bool = False,
        alerts: AlertSettings | None = None,
    ) -> None:
        self._holds = holds
        self._live: dict[str, Hold] = {}  # admitted here and not yet written as settled
        self.health = StoreHealth(holds, tasks)
        # Threshold events and their webhook follow the live configuration (``configure``).
        self.deliveries = Deliveries(holds.redis, lambda: self.alerter.settings)
        self.alerter = Alerter(
            Alerts(holds.redis), tasks, alerts or AlertSettings(), fired=self.deliveries.wake
        )
        leases = Leases(holds, settings, self._live, self.health, self.alerter)
        self.outbox = Outbox(
            tasks, settings.outbox_size, before=leases.renew, on_failure=self.health.failed
        )
        admission = Admission(
            holds, tasks, settings, self.outbox, self._live, self.health, fail_open=fail_open
        )
        settlement = Settlement(holds, tasks, self.outbox, self._live, self.health, self.alerter)
        self.admit = admission.admit
        self.wrap = metered
        self.counter = Counter  # ``wrap``'s work a batch at a time, for the contract check
        self.settle = settlement.settle
        self.keep_leases = leases.keep
        self.renew = leases.renew
        self.reap = leases.reap

    def in_flight(self) -> list[HoldRecord]:
        """The holds of this process's requests not yet settled (the console's Live page)."""
        return [hold.current() for hold in list(self._live.values()) if not hold.settled]
