"""After a settlement, in the background: the threshold events it set off
(``gateway.store.alerts``), counted in ``/metrics`` and delivered to the webhook of
``alerts.webhook``, signed, with retries and back-off; never on a request's path."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os

import aiohttp
import orjson

from gateway import metrics
from gateway.errors import ServiceUnavailable
from gateway.settings import AlertSettings, AlertWebhook
from gateway.store.alerts import Alerts, ThresholdEvent, watched
from gateway.store.records import KeyLimits
from gateway.tasks import BackgroundTasks

log = logging.getLogger("gateway.metering")

SIGNATURE_HEADER = "X-Gateway-Signature"


def signature(secret: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of the body, as a receiver checks it."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Alerter:
    def __init__(self, alerts: Alerts, tasks: BackgroundTasks, settings: AlertSettings) -> None:
        self._alerts = alerts
        self._tasks = tasks
        self._settings = settings

    @property
    def on(self) -> bool:
        return bool(self._settings.thresholds)

    def settled(self, key_id: str, team: str, limits: KeyLimits, team_limits: KeyLimits) -> None:
        """A request of ``key_id`` was charged: check its accounts, in the background."""
        self._tasks.spawn(self._check(key_id, team, limits, team_limits), name="alerts")

    async def _check(
        self, key_id: str, team: str, limits: KeyLimits, team_limits: KeyLimits
    ) -> None:
        events: list[ThresholdEvent] = []
        try:
            for w in watched(key_id, team, limits, team_limits):
                events += await self._alerts.check(w, key_id, self._settings.thresholds)
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
            if self._settings.webhook is not None:
                self._tasks.spawn(deliver(self._settings.webhook, event), name="alert webhook")


async def deliver(webhook: AlertWebhook, event: ThresholdEvent) -> bool:
    """POST one event, signed; tried ``attempts`` times with doubling back-off. True once
    a 2xx answers."""
    body = orjson.dumps(event.to_json())
    secret = os.environ.get(webhook.secret_env, "")
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: signature(secret, body)}
    timeout = aiohttp.ClientTimeout(total=webhook.timeout)
    wait = webhook.backoff
    async with aiohttp.ClientSession(timeout=timeout) as http:
        for attempt in range(1, webhook.attempts + 1):
            try:
                async with http.post(webhook.url, data=body, headers=headers) as r:
                    if 200 <= r.status < 300:
                        return True
                    problem = f"status {r.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = exc.__class__.__name__
            if attempt == webhook.attempts:
                break
            log.info(
                "alert webhook attempt %d failed (%s); again in %.1f s", attempt, problem, wait
            )
            await asyncio.sleep(wait)
            wait *= 2
    metrics.ALERT_DELIVERY_FAILURES.inc()
    log.warning("alert webhook gave up after %d attempts (%s)", webhook.attempts, problem)
    return False
