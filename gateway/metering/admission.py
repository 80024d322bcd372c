"""Admission: hold the most a request can cost, and check its key's and route's limits,
in one round trip; or refuse it (402, 429, or 503 while the store is away)."""

from __future__ import annotations

import asyncio
import logging
import time

from gateway import amounts, tokens
from gateway.errors import ServiceUnavailable
from gateway.ids import random_hex
from gateway.invocation import AgentInvocation
from gateway.metering import refusals
from gateway.metering.health import StoreHealth
from gateway.metering.hold import Hold, admitted_hold
from gateway.metering.pricing import input_costs, tokens_cost
from gateway.outbox import Outbox, Pending
from gateway.route import Pricing, Route
from gateway.settings import MeteringSettings
from gateway.store import ApiKey
from gateway.store.holds import Admitted, HoldRecord, Holds, Refusal, hold_record
from gateway.store.records import KeyLimits
from gateway.tasks import BackgroundTasks
from gateway.typed import copier

log = logging.getLogger("gateway.metering")

# ``evolve(invocation, ...)`` without ``evolve``'s lookup (``typed.copier``).
_copy_invocation = copier(AgentInvocation)


class Admission:
    def __init__(
        self,
        holds: Holds,
        tasks: BackgroundTasks,
        settings: MeteringSettings,
        outbox: Outbox,
        live: dict[str, Hold],
        health: StoreHealth,
        *,
        fail_open: bool = False,
    ) -> None:
        self._holds = holds
        self._tasks = tasks
        self._settings = settings
        self._outbox = outbox
        self._live = live
        self._health = health
        self._fail_open = fail_open

    async def admit(
        self,
        invocation: AgentInvocation,
        key: ApiKey,
        route: Route,
        request_id: str,
        budget: int | None = None,
    ) -> Hold:
        """Hold the most this request can cost, or refuse it (402 or 429)."""
        if key.moving:
            raise refusals.key_moving(key.id)
        pricing = route.pricing
        # The lower of the request's own cap and the route's, or the default without either.
        asked, most = invocation.max_output_tokens, route.max_output_tokens
        if asked and most:
            cap = min(asked, most)
        else:
            cap = asked or most or self._settings.default_max_output_tokens
        # What to reserve for the input, and its estimate, charged if the process dies.
        input_tokens, estimated_input = tokens.input_tokens(invocation)
        if budget is None:  # the input's cost, alone and with the output cap
            input_credits, credits = input_costs(pricing, input_tokens, cap)
        else:  # the budget's room after the input sets the cap
            input_credits = tokens_cost(pricing, input_tokens)
            cap = cap_for_budget(budget, input_credits, cap, pricing)
            credits = tokens_cost(pricing, input_tokens, cap)
        if credits > amounts.MAX_CREDITS:
            raise refusals.too_costly(credits)
        now = time.time()
        charge_id = random_hex()
        record = hold_record(
            credits=credits,
            tokens=input_tokens + cap,
            lease_until=now + self._settings.lease_seconds,
            request_id=request_id,
            key_id=key.id,
            agent=invocation.agent,
            backend="",
            started_at=now,
            input_tokens=estimated_input,
            progress_credits=tokens_cost(pricing, estimated_input),
            team=key.team,
            key_budget=bool(key.team) and key.limits.budgeted,
        )
        route_limits = route.limits
        route_limited = route_limits.any
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
                if route_limited
                else None,
                team_limits=key.team_limits,
            )
        except asyncio.CancelledError:  # the client left: Redis may have the hold already
            self._tasks.spawn(
                self._release_now(record, charge_id, route_limited),
                name=f"release {charge_id}",
            )
            raise
        except ServiceUnavailable:
            self._health.failed()
            if not self._fail_open:
                self._unreserve(record, charge_id, route_limited)
                raise refusals.store_unavailable() from None
            # fail_open: run without a reservation; settled through the outbox. If the
            # admission did reach Redis, settling this charge id releases its hold too.
            log.warning("request %s admitted WITHOUT a reservation: store down", request_id)
            result, reserved = Admitted(0, 0, 0, 0), False
        if isinstance(result, Refusal):
            if result.reason == "quota":
                raise refusals.too_poor(result, credits, input_credits, cap, pricing)
            raise refusals.refused(result, credits)
        hold = admitted_hold(
            charge_id=charge_id,
            record=record,
            invocation=_copy_invocation(invocation, max_output_tokens=cap),
            pricing=pricing,
            output_cap=cap,
            admitted=result,
            key_limits=key.limits,
            route_limited=route_limited,
            reserved=reserved,
            team_limits=key.team_limits,
        )
        self._live[charge_id] = hold
        return hold

    def _unreserve(self, record: HoldRecord, charge_id: str, route: bool) -> None:
        """Release a hold whose admission failed, in case Redis applied it after all."""
        self._outbox.put(
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
            self._health.failed()
            self._unreserve(record, charge_id, route)


def cap_for_budget(budget: int, input_credits: int, cap: int, pricing: Pricing) -> int:
    """The output cap a per-request budget (``X-Gateway-Budget``) allows."""
    if budget < input_credits:
        raise refusals.budget_too_small(budget, input_credits)
    if pricing.output:
        cap = min(cap, int((budget - input_credits) / pricing.output))
    if cap < 1:
        raise refusals.no_room_for_output(budget)
    return cap
