"""A route: what an agent id leads to (its backends, upstream model, prices, limits)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal, get_args

from gateway import price_fields
from gateway.amounts import MAX_CREDITS, MAX_TOKENS
from gateway.typed import positive

MAX_PRICE = Decimal(1_000_000)  # USD per 1M tokens: a dollar a token
# The wire forms of reasoning in Open Responses streams (gateway.dialects.responses_render).
ReasoningEvents = Literal["summary", "spec", "openai"]
REASONING_EVENTS: tuple[str, ...] = get_args(ReasoningEvents)


def price(value: Decimal) -> str | None:
    """A ``check``: a price from 0 to ``MAX_PRICE``, so a cost stays an exact integer."""
    return None if 0 <= value <= MAX_PRICE else f"must be between 0 and {MAX_PRICE:,}"


def output_cap(value: int) -> str | None:
    """A ``check``: an output cap from 1 token to ``MAX_TOKENS``."""
    return None if 0 < value <= MAX_TOKENS else f"must be between 1 and {MAX_TOKENS:,}"


def limit(value: int) -> str | None:
    """A ``check``: a route limit from 0 (none) to the bound of every amount."""
    return None if 0 <= value <= MAX_CREDITS else f"must be between 0 and {MAX_CREDITS:,}"


def reasoning_events(value: str) -> str | None:
    """A ``check``: one of the wire forms of reasoning in Open Responses streams."""
    return None if value in REASONING_EVENTS else f"must be one of {', '.join(REASONING_EVENTS)}"


# What may be kept of an agent's conversations (gateway.store.policy).
StoreMode = Literal["allowed", "never"]
STORE_MODES: tuple[str, ...] = get_args(StoreMode)


def store_mode(value: str) -> str | None:
    """A ``check``: whether conversations may be stored (``allowed``) or not (``never``)."""
    return None if value in STORE_MODES else f"must be one of {', '.join(STORE_MODES)}"


@dataclass(frozen=True, slots=True)
class RouteResponses:
    """How ``/v1/responses`` answers for this route; unset keys take the top-level
    ``responses`` settings."""

    reasoning_events: str | None = field(default=None, metadata={"check": reasoning_events})


@dataclass(frozen=True, slots=True)
class A2ASkill:
    """One skill the route's A2A agent card lists (``gateway.server.a2a``)."""

    id: str
    name: str
    description: str = ""
    tags: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RouteA2A:
    """What the route's A2A agent card says of it; unset, the agent id and a default skill."""

    name: str | None = None
    description: str | None = None
    skills: tuple[A2ASkill, ...] = ()
    input_modes: tuple[str, ...] = ("text/plain",)
    output_modes: tuple[str, ...] = ("text/plain",)
    # Its card is also the origin's /.well-known/agent-card.json (one route at most).
    well_known: bool = False


@dataclass(frozen=True, slots=True)
class Rates:
    """A ``Pricing``'s four prices as integers over one ``scale``: ``input / scale`` is
    the input price exactly (a ``Decimal`` is a fraction whose denominator divides a
    power of ten). ``gateway.metering.pricing`` sums a cost in integers with these and
    divides once, rounding up: the exact figure, without ``Decimal`` arithmetic (most of
    what pricing cost, three times a request)."""

    input: int
    output: int
    cached_input: int  # the input price's when the cached one is not set
    cache_write: int  # likewise
    scale: int

    @classmethod
    def of(cls, pricing: Pricing) -> Rates:
        cached = pricing.input if pricing.cached_input is None else pricing.cached_input
        written = pricing.input if pricing.cache_write is None else pricing.cache_write
        ratios = [p.as_integer_ratio() for p in (pricing.input, pricing.output, cached, written)]
        scale = math.lcm(*(denominator for _, denominator in ratios))
        (i, o, c, w) = (numerator * (scale // denominator) for numerator, denominator in ratios)
        return cls(input=i, output=o, cached_input=c, cache_write=w, scale=scale)


@dataclass(frozen=True, slots=True)
class Pricing:
    """USD per 1M tokens, which is credits per token (1,000,000 credits = 1 USD).

    Cached input and cache writes cost the input price unless set. ``rates``: the same
    prices as integers, made once with the pricing (for ``gateway.metering.pricing``),
    and again for a changed copy (``dataclasses.replace`` and ``typed.evolve`` run
    ``__post_init__``).
    """

    input: Decimal = field(default=Decimal(0), metadata={"check": price})
    output: Decimal = field(default=Decimal(0), metadata={"check": price})
    cached_input: Decimal | None = field(default=None, metadata={"check": price})
    cache_write: Decimal | None = field(default=None, metadata={"check": price})
    rates: Rates = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rates", Rates.of(self))  # frozen: set as its __init__ does

    @property
    def free(self) -> bool:
        return not any((self.input, self.output, self.cached_input, self.cache_write))


@dataclass(frozen=True, slots=True)
class RouteLimits:
    """Limits shared by every key calling the route (0: none), across all processes."""

    rpm: int = field(default=0, metadata={"check": limit})
    tpm: int = field(default=0, metadata={"check": limit})
    max_concurrent: int = field(default=0, metadata={"check": limit})

    @property
    def any(self) -> bool:
        return bool(self.rpm or self.tpm or self.max_concurrent)


@dataclass(frozen=True, slots=True)
class Target:
    """One backend a route may use, with its own upstream model name if it differs."""

    backend: str
    model: str | None = None
    weight: int | None = field(default=None, metadata={"check": positive})


@dataclass(frozen=True, slots=True)
class Route:
    """``backend`` names one backend; ``backends`` lists several, tried in order.

    The gateway falls back to the next backend when one fails before its first
    byte (connection failure, timeout, 429 or 5xx). With ``weight`` on the
    targets, the first one tried is drawn by weight, spreading load across
    equivalent backends; the others remain fallbacks in list order.
    """

    backend: str | None = None
    backends: tuple[Target, ...] = ()
    model: str | None = None
    pricing: Pricing = field(default_factory=Pricing)
    max_output_tokens: int | None = field(default=None, metadata={"check": output_cap})
    limits: RouteLimits = field(default_factory=RouteLimits)
    # Request fields that change the upstream's price, let through (gateway.price_fields).
    allow_price_fields: tuple[str, ...] = field(default=(), metadata={"check": price_fields.known})
    responses: RouteResponses = field(default_factory=RouteResponses)
    # Storage of this agent's conversations: unset keys take ``responses.store`` and
    # ``responses.retention_seconds``; a route may only restrict them (gateway.config).
    store: str | None = field(default=None, metadata={"check": store_mode})
    retention_seconds: int | None = field(default=None, metadata={"check": positive})
    a2a: RouteA2A = field(default_factory=RouteA2A)

    @property
    def targets(self) -> tuple[Target, ...]:
        return _one_target(self.backend) if self.backend else self.backends


@functools.cache
def _one_target(backend: str) -> tuple[Target, ...]:
    """``backend``'s route's targets: made once per backend name, not per request."""
    return (Target(backend),)
