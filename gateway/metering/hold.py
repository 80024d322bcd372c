"""One admitted request, live in this process until it is settled."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.events import Usage
from gateway.invocation import AgentInvocation
from gateway.metering.headers import billing, rate_limits
from gateway.metering.pricing import cost, sane
from gateway.metering.tally import Tally
from gateway.route import Pricing
from gateway.store.holds import Admitted, HoldRecord
from gateway.store.records import KeyLimits
from gateway.typed import copier, evolve

# ``evolve(usage, credits=...)`` without ``evolve``'s lookup (``typed.copier``).
_copy_usage = copier(Usage)


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
    tally: Tally = field(default_factory=Tally)
    settled: bool = False
    credits: int | None = None  # the cost, once settled
    reserved: bool = True  # False: admitted without a reservation (Redis down, fail_open)
    final: Usage | None = None  # the usage settled, while the settlement waits in the outbox
    team_limits: KeyLimits = field(default_factory=KeyLimits)  # the key's team's, if any
    # A ``stream.Counter`` has counted into ``tally``: the next one (a fallback attempt)
    # starts afresh. The first takes the hold's own tally, unused until then.
    counted: bool = False
    # The backend of the attempt running now (``Gateway._first_answer``): the record's
    # own stays as admitted ("") until a renewal writes it (``Leases.renew``), so that
    # an attempt sets a field instead of copying the record (about 2k instructions).
    backend: str = ""

    def current(self) -> HoldRecord:
        """The record with the attempt's backend: what a renewal writes."""
        record = self.record
        return record if record.backend == self.backend else evolve(record, backend=self.backend)

    def usage(self, *, answered: bool = False) -> Usage:
        """What to charge for what the stream delivered so far (see ``Tally.final``)."""
        final = self.tally.final(self.invocation, answered=answered, cap=self.output_cap)
        if final is self.tally.usage and final.credits is not None:
            return final  # the upstream's report as ``metered`` priced it: not again
        return self.priced(final)

    def priced(self, usage: Usage) -> Usage:
        """``usage`` made consistent (``pricing.sane``), with its charge: its cost, but never
        more than this request holds, so no upstream's report takes a balance below zero."""
        usage = sane(usage)
        return _copy_usage(usage, credits=min(cost(usage, self.pricing), self.record.credits))

    def headers(self) -> dict[str, str]:
        """OpenAI-style ``x-ratelimit-*`` headers for the key's limits."""
        return rate_limits(self.key_limits, self.admitted, self.record.started_at)

    def billing_headers(self) -> dict[str, str]:
        """The request's cost and the balance after it: the key's, or its team's (named).
        Once settled, the cost is the one settled (``credits``), not priced again."""
        credits = self.credits
        if credits is None:
            credits = self.usage().credits or 0
        # Admitted without a reservation, the balance is unknown.
        balance = self.admitted.balance - credits if self.reserved else None
        return billing(credits, balance, self.record.team)


def admitted_hold(
    *,
    charge_id: str,
    record: HoldRecord,
    invocation: AgentInvocation,
    pricing: Pricing,
    output_cap: int,
    admitted: Admitted,
    key_limits: KeyLimits,
    route_limited: bool,
    reserved: bool,
    team_limits: KeyLimits,
) -> Hold:
    """``Hold(...)`` by keyword, as admission makes it (the fields it sets; the others
    as the class starts them: a fresh ``Tally``, unsettled), in about two thirds of the
    class call's instructions: a class called with keywords gathers them into a dict
    for its ``__init__``, a function binds them as they come (``holds.hold_record``).
    Keyword-only, as a money record is built (``tests/gateway/test_metering.py`` holds
    it to the class)."""
    return Hold(
        charge_id,
        record,
        invocation,
        pricing,
        output_cap,
        admitted,
        key_limits,
        route_limited,
        Tally(),
        False,
        None,
        reserved,
        None,
        team_limits,
        False,
        "",
    )
