"""The HTTP headers metering adds to an answer or a refusal: OpenAI's ``x-ratelimit-*``,
``Retry-After``, and the gateway's own ``x-gateway-cost``, ``x-gateway-balance`` and
``x-gateway-balance-team``."""

from __future__ import annotations

from gateway.store.holds import WINDOW_SECONDS, Admitted
from gateway.store.records import KeyLimits


def rate_limits(limits: KeyLimits, admitted: Admitted, started_at: float) -> dict[str, str]:
    """The key's request and token limits per minute, and what its window has left."""
    out: dict[str, str] = {}
    reset = f"{WINDOW_SECONDS - int(started_at % WINDOW_SECONDS)}s"
    if limits.rpm:
        out["x-ratelimit-limit-requests"] = str(limits.rpm)
        out["x-ratelimit-remaining-requests"] = str(max(0, limits.rpm - admitted.requests))
        out["x-ratelimit-reset-requests"] = reset
    if limits.tpm:
        out["x-ratelimit-limit-tokens"] = str(limits.tpm)
        out["x-ratelimit-remaining-tokens"] = str(max(0, limits.tpm - admitted.tokens))
        out["x-ratelimit-reset-tokens"] = reset
    return out


def billing(credits: int, balance: int | None, team: str = "") -> dict[str, str]:
    """A complete answer's cost and, when known, the balance after it: the key's, or
    for a key in a team the team's, named by ``x-gateway-balance-team``."""
    out = {"x-gateway-cost": str(credits)}
    if balance is not None:
        out["x-gateway-balance"] = str(balance)
    if team:
        out["x-gateway-balance-team"] = team
    return out


def refusal(kind: str | None, limit: int, retry: int) -> dict[str, str]:
    """A 429's: when to retry, and which limit (``requests``, ``tokens``) ran out."""
    headers = {"Retry-After": str(retry)}
    if kind is not None:
        headers[f"x-ratelimit-limit-{kind}"] = str(limit)
        headers[f"x-ratelimit-remaining-{kind}"] = "0"
        headers[f"x-ratelimit-reset-{kind}"] = f"{retry}s"
    return headers
