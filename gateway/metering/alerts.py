"""After a settlement, in the background: the threshold events it set off
(``gateway.store.alerts``), counted in ``/metrics``; the webhook of ``alerts.webhook``
gets them from the stream (``gateway.metering.webhook``), never on a request's path.

The settings are the live configuration's: a reload's ``configure`` applies at the
next settlement."""

from __future__ import annotations

import logging
from collections.abc import Callable

from gateway import metrics
from gateway.errors import ServiceUnavailable
from gateway.settings import AlertSettings
from gateway.store.alerts import Alerts, ThresholdEvent, watched
from gateway.store.records import KeyLimits
from gateway.tasks import BackgroundTasks

log = logging.getLogger("gateway.metering")


class Alerter:
    def __init__(
        self,
        alerts: Alerts,
        tasks: BackgroundTasks,
        settings: AlertSettings,
        *,
        fired: Callable[[], None] | None = None,
    ) -> None:
        self._alerts = alerts
        self._tasks = tasks
        self.settings = settings
        self._fired = fired  # told when this process appended an event (wakes delivery)

    def configure(self, settings: AlertSettings) -> None:
        """The reloaded configuration's ``alerts``: used from the next settlement on."""
        self.settings = settings

    @property
    def on(self) -> bool:
        return bool(self.settings.thresholds)

    def settled(self, key_id: str, team: str, limits: KeyLimits, team_limits: KeyLimits) -> None:
        """A request of ``key_id`` was charged: check its accounts, in the background."""
        if self.on:
            self._tasks.spawn(self._check(key_id, team, limits, team_limits), name="alerts")

    def reaped(self, key_id: str, team: str) -> None:
        """The reaper charged a hold of ``key_id`` whose process died: check its accounts
        with the limits as stored (that process's copy of them is gone with it)."""
        if self.on:
            self._tasks.spawn(self._check_stored(key_id, team), name="alerts")

    async def _check_stored(self, key_id: str, team: str) -> None:
        try:
            limits, team_limits = await self._alerts.limits_of(key_id, team)
        except ServiceUnavailable:
            log.warning("threshold events of key %s not checked: store unavailable", key_id)
            return
        await self._check(key_id, team, limits, team_limits)

    async def _check(
        self, key_id: str, team: str, limits: KeyLimits, team_limits: KeyLimits
    ) -> None:
        events: list[ThresholdEvent] = []
        thresholds = self.settings.thresholds
        try:
            for w in watched(key_id, team, limits, team_limits):
                events += await self._alerts.check(w, key_id, thresholds)
        except ServiceUnavailable:
            log.warning("threshold events of key %s not checked: store unavailable", key_id)
            return
        for event in events:
            metrics.THRESHOLD_EVENTS.labels(event.whose, event.kind, str(event.fraction)).inc()
            log.info(
                "threshold: %s %s spent %.0f%% of its %s (%d of %d credits)",
                event.whose, event.account, event.fraction * 100, event.kind, event.value,
                event.limit,
            )  # fmt: skip
        if events and self._fired is not None:
            self._fired()
