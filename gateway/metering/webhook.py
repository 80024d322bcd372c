"""Delivery of threshold events to the webhook of ``alerts.webhook``: at least once,
across replicas, never on a request's path.

Every process with a webhook reads the stream ``gw:alerts`` as one consumer of the
group ``webhook`` (XREADGROUP), POSTs each event (signed, with the stream entry id as
the event's stable id in ``X-Gateway-Event-Id``, so that a receiver can drop a
repeat), and acknowledges it (XACK) once a 2xx answers, or once it gave up after
``attempts`` tries with doubling back-off (counted in
``gateway_alert_webhook_failures_total``). An event taken by a process that died before
acknowledging it stays pending in the group; any live process takes it over
(XAUTOCLAIM) once it has been idle ``claim_after`` seconds, and tries it again, up to
``MAX_DELIVERIES`` takings in all. A process working through its retries marks the
event as still its own between tries, so a slow receiver alone does not get it twice.

The group starts at the stream's end when the first process with a webhook creates
it: events from before any webhook was configured are not sent. A consumer idle a day
with nothing pending (a process long gone) is removed from the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any, cast

import aiohttp
import orjson
from redis import asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from gateway import metrics
from gateway.errors import ServiceUnavailable
from gateway.settings import AlertSettings, AlertWebhook
from gateway.store import schema
from gateway.store.alerts import ThresholdEvent
from gateway.store.store import guard

log = logging.getLogger("gateway.metering")

SIGNATURE_HEADER = "X-Gateway-Signature"
GROUP = "webhook"  # the consumer group of the webhook's deliveries on gw:alerts
EVENT_ID_HEADER = "X-Gateway-Event-Id"
MAX_DELIVERIES = 5  # takings of one event (by its first reader and by others) at most
BATCH = 16  # events read or taken over at once
POLL_SECONDS = 0.5  # how often an idle process looks for new events
STORE_RETRY_SECONDS = 2.0  # after the store failed, looked at again this soon
FORGET_CONSUMER_SECONDS = 24 * 3600  # a consumer idle this long, with nothing pending, goes


def signature(secret: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of the body, as a receiver checks it."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def consumer_name() -> str:
    """This process's name in the group: host, pid and a random part (a pid is reused)."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def body_of(event_id: str, event: ThresholdEvent) -> bytes:
    """The JSON body POSTed: the event, with its id (as in ``X-Gateway-Event-Id``)."""
    return orjson.dumps({"id": event_id, **event.to_json()})


async def post(
    webhook: AlertWebhook, event_id: str, body: bytes, *, keep: Callable[[], Any] | None = None
) -> bool:
    """POST one event, signed; tried ``attempts`` times with doubling back-off. True once
    a 2xx answers. ``keep`` (awaited before each retry) tells the group the event is
    still being worked on."""
    secret = os.environ.get(webhook.secret_env, "")
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature(secret, body),
        EVENT_ID_HEADER: event_id,
    }
    timeout = aiohttp.ClientTimeout(total=webhook.timeout)
    wait = webhook.backoff
    problem = ""
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
                "alert webhook attempt %d of event %s failed (%s); again in %.1f s",
                attempt, event_id, problem, wait,
            )  # fmt: skip
            await asyncio.sleep(wait)
            wait *= 2
            if keep is not None:
                await keep()
    log.warning(
        "alert webhook gave up on event %s after %d attempts (%s)",
        event_id, webhook.attempts, problem,
    )  # fmt: skip
    return False


class Deliveries:
    """The webhook's deliveries of this process: ``run`` for the life of the process
    (idle while no webhook is configured: ``settings`` is read at each pass, so a
    reload that adds, changes or removes the webhook applies at once)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        settings: Callable[[], AlertSettings],
        *,
        consumer: str | None = None,
        poll: float = POLL_SECONDS,
    ) -> None:
        self.redis = redis
        self.consumer = consumer or consumer_name()
        self._settings = settings
        self._poll = poll
        self._wake = asyncio.Event()
        self._group = False  # created (or found) by this process
        self._claimed_at = 0.0  # when this process last looked for others' events

    def wake(self) -> None:
        """An event was just appended here: look now, not at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            webhook = self._settings().webhook
            busy = False
            if webhook is not None:
                try:
                    busy = await self.once(webhook)
                except ServiceUnavailable:
                    log.warning("alert webhook deliveries paused: store unavailable")
                    await asyncio.sleep(STORE_RETRY_SECONDS)
                except Exception:  # the loop outlives any one event's surprise
                    log.exception("alert webhook deliveries: unexpected error; going on")
                    await asyncio.sleep(STORE_RETRY_SECONDS)
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll)
                self._wake.clear()

    async def once(self, webhook: AlertWebhook) -> bool:
        """One pass: take over events a dead process left (every ``claim_after`` / 2),
        else read new ones; deliver and acknowledge each. True if there were any."""
        await self._ensure_group()
        entries: list[tuple[str, dict[str, str]]] = []
        now = time.monotonic()
        if now - self._claimed_at >= webhook.claim_after / 2:
            self._claimed_at = now
            entries = await self._take_over(webhook)
        if not entries:
            entries = await self._read()
        for entry_id, fields in entries:
            await self._deliver(webhook, entry_id, fields)
        return bool(entries)

    async def _ensure_group(self) -> None:
        if self._group:
            return
        async with guard():
            try:
                await self.redis.xgroup_create(schema.ALERTS, GROUP, id="$", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        self._group = True

    async def _read(self) -> list[tuple[str, dict[str, str]]]:
        async with guard():
            try:
                found: Any = await self.redis.xreadgroup(
                    GROUP, self.consumer, {schema.ALERTS: ">"}, count=BATCH
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                self._group = False  # the stream was deleted: make the group again
                return []
        if not found:
            return []
        return cast(list[tuple[str, dict[str, str]]], found[0][1])

    async def _take_over(self, webhook: AlertWebhook) -> list[tuple[str, dict[str, str]]]:
        """Events another consumer took and left idle ``claim_after`` seconds: now ours.
        One taken too often (a receiver that kills whoever calls it?) is given up."""
        idle_ms = int(webhook.claim_after * 1000)
        async with guard():
            try:
                answer = await self.redis.xautoclaim(
                    schema.ALERTS, GROUP, self.consumer, idle_ms, "0-0", count=BATCH
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                self._group = False
                return []
        await self._forget_idle_consumers()
        claimed = cast(list[tuple[str, dict[str, str] | None]], answer[1])
        taken: list[tuple[str, dict[str, str]]] = []
        for entry_id, fields in claimed:
            if not fields:  # trimmed from the stream meanwhile: nothing left to send
                await self._ack(entry_id)
                continue
            if await self._deliveries(entry_id) > MAX_DELIVERIES:
                metrics.ALERT_DELIVERY_FAILURES.inc()
                log.warning("alert webhook gave up on event %s: taken over too often", entry_id)
                await self._ack(entry_id)
                continue
            log.info("alert webhook: took over event %s from a process gone quiet", entry_id)
            taken.append((entry_id, fields))
        return taken

    async def _forget_idle_consumers(self) -> None:
        """Remove consumers with nothing pending and idle ``FORGET_CONSUMER_SECONDS``
        (processes long gone), so the group's list does not grow with every restart."""
        async with guard():
            consumers = await self.redis.xinfo_consumers(schema.ALERTS, GROUP)
            for consumer in consumers:
                idle_ms = int(consumer.get("inactive", consumer.get("idle", 0)))
                if (
                    int(consumer["pending"]) == 0
                    and idle_ms >= FORGET_CONSUMER_SECONDS * 1000
                    and consumer["name"] != self.consumer
                ):
                    await self.redis.xgroup_delconsumer(schema.ALERTS, GROUP, consumer["name"])

    async def _deliveries(self, entry_id: str) -> int:
        async with guard():
            pending = cast(
                list[dict[str, Any]],
                await self.redis.xpending_range(schema.ALERTS, GROUP, entry_id, entry_id, 1),
            )
        return int(pending[0]["times_delivered"]) if pending else 0

    async def _deliver(self, webhook: AlertWebhook, entry_id: str, fields: dict[str, str]) -> None:
        try:
            event = ThresholdEvent.from_fields(fields)
        except (KeyError, ValueError):
            log.warning("alert webhook: event %s is malformed; dropped", entry_id)
            await self._ack(entry_id)
            return

        async def keep() -> None:  # still ours: reset its idle time (not its count)
            with contextlib.suppress(ServiceUnavailable):
                async with guard():
                    await self.redis.xclaim(
                        schema.ALERTS, GROUP, self.consumer, 0, [entry_id], justid=True
                    )

        if not await post(webhook, entry_id, body_of(entry_id, event), keep=keep):
            metrics.ALERT_DELIVERY_FAILURES.inc()
        await self._ack(entry_id)

    async def _ack(self, entry_id: str) -> None:
        async with guard():
            await self.redis.xack(schema.ALERTS, GROUP, entry_id)

    async def pending(self) -> int:
        """Events taken by some consumer and not yet acknowledged."""
        async with guard():
            try:
                summary = await self.redis.xpending(schema.ALERTS, GROUP)
            except RedisError:
                return 0
        return int(summary["pending"])
