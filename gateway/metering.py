"""Metering: reserve before forwarding, settle exactly once after, never overspend.

- **Admission** holds the most a request can cost (its input, estimated with
  ``tokens.reserve_input``, at the input price, plus its output cap at the
  output price) and checks the key's and route's limits, in one round trip
  (``Holds.admit``). A key whose balance, minus what its requests in flight
  hold, cannot cover that gets 402; a limit gets 429 with ``Retry-After``.
- **The stream** never runs past the output cap it was admitted with: the cap
  is sent to the backend, and if a backend streams past it the gateway ends the
  answer itself with finish reason ``length``.
- **Settlement**, when the stream ends for any reason (completed, failed, or
  closed because the client went away), charges the true cost, releases the
  rest of the hold and appends the ledger entry, atomically and once per
  request, in a background task that a client disconnect cannot cancel.
- **Usage** comes from the upstream; when it never arrives it is estimated from
  what was streamed (``tokens``) and marked ``estimated``, never zero once
  output was delivered.
- **Leases**: each hold has a lease that this process renews, with the
  request's progress, while the request runs. If the process dies, the reaper
  of any other process settles the hold after the lease at that progress;
  settlement is idempotent, so nothing is charged twice.
- **Redis outages** (see ``gateway.outbox``): a settlement Redis cannot take
  waits in the bounded outbox and is written, in order, when Redis answers;
  the hold stays live here meanwhile, its lease renewed with the final usage as
  soon as Redis is back, so even a reaper that wins the race charges the true
  amount. A reaper that saw the store fail waits one lease period before
  reaping, so live processes renew first. Admission while Redis is down is
  refused with a 503 (``redis.admission: fail_closed``) or admitted without a
  reservation and settled through the outbox (``fail_open``).

Rounding rule: the exact cost (tokens of each kind times their price in
credits per token, summed in decimal without rounding) is rounded **up** to a
whole credit once per request: never more than one credit above the exact
cost, and never below it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import random
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from gateway import amounts, metrics, tokens
from gateway.errors import InsufficientQuota, RateLimited, ServiceUnavailable
from gateway.events import (
    Batch,
    Completed,
    Event,
    ReasoningDelta,
    TextDelta,
    ToolCallArgumentsDelta,
    ToolCallStarted,
    Usage,
)
from gateway.invocation import AgentInvocation
from gateway.outbox import Outbox, Pending
from gateway.route import Pricing, Route
from gateway.settings import MeteringSettings
from gateway.store import ApiKey
from gateway.store.holds import WINDOW_SECONDS, Admitted, HoldRecord, Holds, Refusal
from gateway.store.records import KeyLimits
from gateway.tasks import BackgroundTasks

log = logging.getLogger(__name__)

RENEW_RETRY_SECONDS = 1.0  # lease upkeep that failed is tried again this soon
_DELTAS = (TextDelta, ReasoningDelta, ToolCallArgumentsDelta)  # each a token at least


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

    __slots__ = ("completed", "deltas", "usage", "weight")

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.weight = 0.0  # estimated tokens of what was streamed
        self.deltas = 0
        self.completed = False

    def add(self, event: Event) -> None:
        if isinstance(event, TextDelta | ReasoningDelta):
            self.weight += tokens.text_weight(event.text)
            self.deltas += 1
        elif isinstance(event, ToolCallArgumentsDelta):
            self.weight += tokens.text_weight(event.arguments)
            self.deltas += 1
        elif isinstance(event, ToolCallStarted):
            self.weight += tokens.text_weight(event.name)
        elif isinstance(event, Usage):
            self.usage = event  # a later report replaces an earlier one
        elif isinstance(event, Completed):
            self.completed = True

    def final(
        self, invocation: AgentInvocation, *, answered: bool = False, cap: int | None = None
    ) -> Usage:
        """The upstream's usage when complete, else an estimate of what was delivered.

        An estimate never exceeds ``cap``, the output the request was admitted for;
        usage the upstream reports is taken as reported (``Hold.priced`` bounds its
        charge), except a report of no output for an answer that delivered some.
        """
        delivered = tokens.estimate_output(self.weight, self.deltas) if self.deltas else 0
        if cap is not None:
            delivered = min(delivered, cap)
        reported = self.usage
        if (
            reported is not None
            and (self.completed or reported.output_tokens >= delivered)
            and (reported.output_tokens > 0 or delivered == 0)
        ):
            return reported
        if self.usage is None and not (answered or self.deltas):
            return Usage(estimated=True)  # the upstream failed before answering
        base = self.usage or Usage(input_tokens=tokens.estimate_input(invocation))
        return dataclasses.replace(
            base, output_tokens=max(base.output_tokens, delivered), estimated=True
        )


@dataclass(slots=True)
class Hold:
    """One admitted request, live in this process until it is settled."""

    charge_id: str
    record: HoldRecord
    invocation: AgentInvocation  # as sent to backends: its output capped
    pricing: Pricing
    output_cap: int
    admitted: Admitted
    key_limits: KeyLimits
    route_limited: bool
    tally: _Tally = field(default_factory=_Tally)
    settled: bool = False
    credits: int | None = None  # the cost, once settled
    reserved: bool = True  # False: admitted without a reservation (Redis down, fail_open)
    final: Usage | None = None  # the usage settled, while the settlement waits in the outbox

    def usage(self, *, answered: bool = False) -> Usage:
        """What to charge for what the stream delivered so far (see ``_Tally.final``)."""
        return self.priced(
            self.tally.final(self.invocation, answered=answered, cap=self.output_cap)
        )

    def priced(self, usage: Usage) -> Usage:
        """``usage`` made consistent (``_sane``), with its charge: its cost, but never more
        than this request holds, so no upstream's report takes a balance below zero."""
        sane = _sane(usage)
        return dataclasses.replace(sane, credits=min(cost(sane, self.pricing), self.record.credits))

    def headers(self) -> dict[str, str]:
        """OpenAI-style ``x-ratelimit-*`` headers for the key's limits."""
        limits, out = self.key_limits, {}
        reset = f"{WINDOW_SECONDS - int(self.record.started_at % WINDOW_SECONDS)}s"
        if limits.rpm:
            out["x-ratelimit-limit-requests"] = str(limits.rpm)
            out["x-ratelimit-remaining-requests"] = str(max(0, limits.rpm - self.admitted.requests))
            out["x-ratelimit-reset-requests"] = reset
        if limits.tpm:
            out["x-ratelimit-limit-tokens"] = str(limits.tpm)
            out["x-ratelimit-remaining-tokens"] = str(max(0, limits.tpm - self.admitted.tokens))
            out["x-ratelimit-reset-tokens"] = reset
        return out

    def billing_headers(self) -> dict[str, str]:
        """The request's cost and the key's balance after it (for complete answers)."""
        credits = self.usage().credits or 0
        if not self.reserved:
            return {"x-gateway-cost": str(credits)}  # the balance is unknown
        return {
            "x-gateway-cost": str(credits),
            "x-gateway-balance": str(self.admitted.balance - credits),
        }


class Meter:
    def __init__(
        self,
        holds: Holds,
        tasks: BackgroundTasks,
        settings: MeteringSettings,
        *,
        fail_open: bool = False,
    ) -> None:
        self._holds = holds
        self._tasks = tasks
        self._settings = settings
        self._fail_open = fail_open
        self._live: dict[str, Hold] = {}  # admitted here and not yet written as settled
        self._store_failed_at = -math.inf  # monotonic time the store last failed us
        self.outbox = Outbox(
            tasks, settings.outbox_size, before=self.renew, on_failure=self._store_failed
        )

    def _store_failed(self) -> None:
        now = time.monotonic()
        if now - self._store_failed_at >= 1.0:  # at most once a second
            # Idle connections made before the outage would each fail one request after it.
            self._tasks.spawn(self._holds.reset_idle(), name="reset idle store connections")
        self._store_failed_at = now

    # Admission

    async def admit(
        self,
        invocation: AgentInvocation,
        key: ApiKey,
        route: Route,
        request_id: str,
        budget: int | None = None,
    ) -> Hold:
        """Hold the most this request can cost, or refuse it (402 or 429)."""
        pricing = route.pricing
        caps = [c for c in (invocation.max_output_tokens, route.max_output_tokens) if c]
        cap = min(caps) if caps else self._settings.default_max_output_tokens
        input_tokens = tokens.reserve_input(invocation)
        input_credits = cost(Usage(input_tokens=input_tokens), pricing)
        if budget is not None:
            cap = _cap_for_budget(budget, input_credits, cap, pricing)
        credits = cost(Usage(input_tokens=input_tokens, output_tokens=cap), pricing)
        if credits > amounts.MAX_CREDITS:
            raise InsufficientQuota(
                f"This request may cost up to {credits:,} credits, more than any one request "
                f"may hold ({amounts.MAX_CREDITS:,}): ask for fewer output tokens."
            )
        now = time.time()
        charge_id = secrets.token_hex(16)
        estimated_input = tokens.estimate_input(invocation)  # charged if the process dies
        record = HoldRecord(
            credits=credits,
            tokens=input_tokens + cap,
            lease_until=now + self._settings.lease_seconds,
            request_id=request_id,
            key_id=key.id,
            agent=invocation.agent,
            backend="",
            started_at=now,
            input_tokens=estimated_input,
            progress_credits=cost(Usage(input_tokens=estimated_input), pricing),
        )
        route_limits = route.limits
        reserved = True
        try:
            result = await self._holds.admit(
                charge_id,
                record,
                key.limits,
                check_money=not pricing.free,
                route_limits=KeyLimits(
                    route_limits.rpm, route_limits.tpm, route_limits.max_concurrent
                )
                if route_limits.any
                else None,
            )
        except asyncio.CancelledError:  # the client left: Redis may have the hold already
            self._tasks.spawn(
                self._release_now(record, charge_id, route_limits.any),
                name=f"release {charge_id}",
            )
            raise
        except ServiceUnavailable:
            self._store_failed()
            if not self._fail_open:
                self._unreserve(record, charge_id, route_limits.any)
                raise ServiceUnavailable(
                    "The gateway cannot reach its store (Redis) to reserve this request's "
                    "cost, so it refuses the request rather than risk overspending "
                    "(redis.admission: fail_closed); retry later.",
                    code="store_unavailable",
                    headers={"Retry-After": "1"},
                ) from None
            # fail_open: run without a reservation; settled through the outbox. If the
            # admission did reach Redis, settling this charge id releases its hold too.
            log.warning("request %s admitted WITHOUT a reservation: store down", request_id)
            result, reserved = Admitted(0, 0, 0, 0), False
        if isinstance(result, Refusal):
            if result.reason == "quota":
                raise _too_poor(result, credits, input_credits, cap, pricing)
            raise _refused(result, credits)
        hold = Hold(
            charge_id=charge_id,
            record=record,
            invocation=dataclasses.replace(invocation, max_output_tokens=cap),
            pricing=pricing,
            output_cap=cap,
            admitted=result,
            key_limits=key.limits,
            route_limited=route_limits.any,
            reserved=reserved,
        )
        self._live[charge_id] = hold
        return hold

    def _unreserve(self, record: HoldRecord, charge_id: str, route: bool) -> None:
        """Release a hold whose admission failed, in case Redis applied it after all."""
        self.outbox.put(
            Pending(
                charge_id,
                f"release of refused request {record.request_id} (key {record.key_id})",
                lambda: self._holds.release(record, charge_id, key=True, route=route),
            )
        )

    async def _release_now(self, record: HoldRecord, charge_id: str, route: bool) -> None:
        """Release the hold of a request whose client left during admission.

        Written at once (queued after its admission by the pipeliner), not behind
        the outbox: only a store failure sends it there.
        """
        try:
            await self._holds.release(record, charge_id, key=True, route=route)
        except ServiceUnavailable:
            self._store_failed()
            self._unreserve(record, charge_id, route)

    # The stream

    async def wrap(self, batches: AsyncIterator[Batch], hold: Hold) -> AsyncIterator[Batch]:
        """Count what passes, report usage with every answer, and stop at the output cap.

        ``batches`` keep to the stream contract (``pipeline._checked``): the
        terminal event comes last.
        """
        tally = hold.tally = _Tally()  # a fallback attempt starts afresh
        cap = hold.output_cap
        async for batch in batches:
            for index, event in enumerate(batch):
                if isinstance(event, _DELTAS):
                    if tally.deltas >= cap:
                        # This delta (a token at least) would pass the cap, and what was reserved.
                        log.warning(
                            "request %s passed its output cap: ended", hold.record.request_id
                        )
                        yield [*batch[:index], *self._end(hold, Completed("length"))]
                        return
                elif isinstance(event, Completed) and tally.usage is None:
                    batch = [*batch[:index], *self._end(hold, event)]
                    break
                elif isinstance(event, Usage):
                    event = hold.priced(event)
                    batch = [*batch[:index], event, *batch[index + 1 :]]
                tally.add(event)
            yield batch

    def _end(self, hold: Hold, completed: Completed) -> Batch:
        """The last events of an answer that reported no usage: an estimate, then ``completed``."""
        usage = hold.usage(answered=True)
        hold.tally.add(usage)
        hold.tally.add(completed)
        return [usage, completed]

    # Settlement

    def settle(self, hold: Hold, backend: str) -> None:
        """Settle ``hold`` once, in the background, with what its stream delivered
        (for a request that never answered: nothing, so only its hold is released)."""
        if hold.settled:
            return
        hold.settled = True
        usage = hold.usage()
        credits = hold.credits = usage.credits or 0
        unbilled = cost(usage, hold.pricing) - credits
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
        fields = _fields(record, usage, backend)
        if unbilled:
            fields["unbilled"] = str(unbilled)
        credits = hold.credits or 0

        async def write() -> None:
            await self._holds.settle(
                record,
                hold.charge_id,
                credits,
                usage.total_tokens,
                fields,
                route=hold.route_limited,
            )
            self._live.pop(hold.charge_id, None)

        if not len(self.outbox):  # else it queues behind the others: settlements stay in order
            try:
                await write()
                return
            except ServiceUnavailable:
                self._store_failed()
        hold.final = usage  # renewals carry the final usage from now on
        self.outbox.put(
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

    # Leases

    async def keep_leases(self) -> None:
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
                self._store_failed()
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
        if time.monotonic() - self._store_failed_at < self._settings.lease_seconds:
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
            fields = _fields(record, usage, record.backend)
            fields["reaped"] = "1"
            credits = min(record.progress_credits, record.credits)  # never beyond the hold
            if await self._holds.settle(
                record, charge_id, credits, usage.total_tokens, fields, route=True
            ):
                settled += 1
                log.warning(
                    "settled request %s of a process that died (%d credits)",
                    record.request_id,
                    credits,
                )
        return settled


def _sane(usage: Usage) -> Usage:
    """An upstream's usage made consistent: every count within ``[0, MAX_TOKENS]``, input
    covering its cached and written parts, output covering its reasoning."""
    clamp = amounts.tokens
    input_tokens = clamp(
        max(usage.input_tokens, usage.cached_input_tokens + usage.cache_write_tokens)
    )
    cached = min(clamp(usage.cached_input_tokens), input_tokens)
    written = min(clamp(usage.cache_write_tokens), input_tokens - cached)
    output = clamp(max(usage.output_tokens, usage.reasoning_tokens))
    reasoning = min(clamp(usage.reasoning_tokens), output)
    counts = (input_tokens, output, cached, written, reasoning)
    if counts == (
        usage.input_tokens,
        usage.output_tokens,
        usage.cached_input_tokens,
        usage.cache_write_tokens,
        usage.reasoning_tokens,
    ):
        return usage
    return Usage(*counts, estimated=usage.estimated, credits=usage.credits)


def _fields(record: HoldRecord, usage: Usage, backend: str) -> dict[str, str]:
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


def _cap_for_budget(budget: int, input_credits: int, cap: int, pricing: Pricing) -> int:
    """The output cap a per-request budget (``X-Gateway-Budget``) allows."""
    if budget < input_credits:
        raise InsufficientQuota(
            f"The request's budget of {budget} credits does not cover its input "
            f"(up to {input_credits} credits).",
            code="budget_too_small",
        )
    if pricing.output:
        cap = min(cap, int((budget - input_credits) / pricing.output))
    if cap < 1:
        raise InsufficientQuota(
            f"The request's budget of {budget} credits leaves no room for output.",
            code="budget_too_small",
        )
    return cap


def _too_poor(
    refusal: Refusal, credits: int, input_credits: int, cap: int, pricing: Pricing
) -> InsufficientQuota:
    """The 402 of a key whose free balance cannot hold the request, saying what would fit.

    The hold assumes the whole output cap (the route's default when the client sets none),
    so a small key is refused a request it could afford with a smaller ``max_tokens``.
    """
    balance, held = refusal.current, refusal.limit
    free = balance - held
    situation = (
        f"Insufficient balance: this key has {balance} credits ({held} held by requests in "
        f"flight), and this request may cost up to {credits} credits: its input, up to "
        f"{input_credits}, and {cap} output tokens."
    )
    fits = math.floor((free - input_credits) / pricing.output) if pricing.output else 0
    if fits >= 1:
        advice = (
            f" Ask for at most {fits} output tokens (max_tokens, or max_output_tokens in "
            "Open Responses), or add credits to the key."
        )
    else:
        advice = " Its input alone needs more than is free: add credits, or send less input."
    return InsufficientQuota(situation + advice)


def _refused(refusal: Refusal, credits: int) -> InsufficientQuota | RateLimited:
    reason = refusal.reason
    if reason in ("daily_budget", "monthly_budget"):
        period = "daily" if reason == "daily_budget" else "monthly"
        return InsufficientQuota(
            f"This key's {period} budget of {refusal.limit} credits would be exceeded "
            f"({refusal.current} spent; this request may cost up to {credits}).",
            code="budget_exceeded",
        )
    what = {
        "requests": "requests per minute",
        "tokens": "tokens per minute",
        "concurrency": "concurrent requests",
    }[reason]
    retry = max(1, math.ceil(refusal.retry_after)) if refusal.retry_after else 1
    headers = {"Retry-After": str(retry)}
    kind = {"requests": "requests", "tokens": "tokens"}.get(reason)
    if kind is not None:
        headers[f"x-ratelimit-limit-{kind}"] = str(refusal.limit)
        headers[f"x-ratelimit-remaining-{kind}"] = "0"
        headers[f"x-ratelimit-reset-{kind}"] = f"{retry}s"
    return RateLimited(
        f"Rate limit reached: {refusal.limit} {what} ({refusal.current} in use). "
        f"Retry after {retry} s.",
        headers=headers,
    )
