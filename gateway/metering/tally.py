"""What one stream has delivered, to estimate the usage an upstream did not report."""

from __future__ import annotations

from gateway import tokens
from gateway.events import (
    Completed,
    Event,
    ReasoningDelta,
    TextDelta,
    ToolCallArgumentsDelta,
    ToolCallStarted,
    Usage,
)
from gateway.invocation import AgentInvocation
from gateway.typed import evolve


class Tally:
    """What one stream has delivered, to estimate usage the upstream did not report."""

    __slots__ = ("completed", "deltas", "usage", "weight")

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.weight = 0.0  # estimated tokens of what was streamed
        self.deltas = 0
        self.completed = False

    def add(self, event: Event) -> None:
        # The two events of most answers first, by their exact type.
        if type(event) is Usage:
            self.usage = event  # a later report replaces an earlier one
        elif type(event) is Completed:
            self.completed = True
        elif isinstance(event, TextDelta | ReasoningDelta):
            self.weight += tokens.text_weight(event.text)
            self.deltas += 1
        elif isinstance(event, ToolCallArgumentsDelta):
            self.weight += tokens.text_weight(event.arguments)
            self.deltas += 1
        elif isinstance(event, ToolCallStarted):
            self.weight += tokens.text_weight(event.name)
        elif isinstance(event, Usage):
            self.usage = event
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
        return evolve(
            base, output_tokens=max(base.output_tokens, delivered), estimated=True, credits=None
        )
