"""Request fields that change what the upstream charges per token, and which routes let
them through.

A key is billed at its route's price, whatever the upstream charged. A client
asking for a dearer service (OpenAI's ``service_tier: priority``, Anthropic's
``speed: fast``) would be served at the route's price, and the operator pays
the difference, so such a field is refused with a 400 naming it unless the
route lists it in ``allow_price_fields`` (its price then covers it). A value
that can only mean the standard price passes on any route.

The fields, by the names every dialect gives them:

- ``service_tier`` (Chat Completions, Open Responses, Anthropic Messages):
  ``default`` (OpenAI) and ``standard_only`` (Anthropic) are the standard
  price; ``auto`` may use a dearer tier the upstream account has, and
  ``flex``, ``scale`` and ``priority`` are priced on their own.
- ``speed`` (Anthropic Messages): ``standard`` is the standard price; ``fast``
  is priced higher.
"""

from __future__ import annotations

from gateway.errors import InvalidRequest
from gateway.invocation import AgentInvocation

STANDARD: dict[str, frozenset[str]] = {
    "service_tier": frozenset({"default", "standard_only"}),
    "speed": frozenset({"standard"}),
}
"""Each field, and the values that leave the price as it is."""


def known(names: tuple[str, ...]) -> str | None:
    """A ``check`` for ``routes.<agent>.allow_price_fields``."""
    unknown = [n for n in names if n not in STANDARD]
    if unknown:
        return f"unknown field {unknown[0]!r}: the fields are {', '.join(STANDARD)}"
    return None


def check(invocation: AgentInvocation, allowed: tuple[str, ...]) -> None:
    """Refuse ``invocation`` if it asks for a price its route does not allow."""
    values = {"service_tier": invocation.service_tier, "speed": invocation.speed}
    for name, value in values.items():
        if value is None or value in STANDARD[name] or name in allowed:
            continue
        agent = invocation.agent
        raise InvalidRequest(
            f"'{name}' is not allowed on agent '{agent}': {value!r} can change the upstream's "
            f"price, and this route bills at its own (an operator may allow it with "
            f"routes.{agent}.allow_price_fields). Leave '{name}' out.",
            param=name,
            code="field_not_allowed",
        )
