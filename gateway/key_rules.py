"""What an admin action's values must be: one set of checks for the CLI and the admin API.

Each check returns ``None`` or what is wrong, without naming the value, as the
configuration's field checks do: the CLI prints it after the option
(``argument --balance: must not be negative``), the admin API after the JSON
field (``balance must not be negative``), so both front ends say the same thing.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable

from gateway.amounts import MAX_CREDITS

MAX_TEXT = 1000
# datetime (and so every rendering of an expiry) stops at the year 9999.
MAX_LIFETIME_SECONDS = 100 * 365 * 86400


def name(value: str) -> str | None:
    if not value.strip() or len(value) > MAX_TEXT:
        return f"must be a non-empty string of at most {MAX_TEXT} characters"
    return None


def note(value: str) -> str | None:
    return None if len(value) <= MAX_TEXT else f"must be at most {MAX_TEXT} characters"


def balance(credits: int) -> str | None:
    """An initial balance: a key does not start in debt."""
    if credits < 0:
        return "must not be negative (a key starts with 0 credits or more)"
    if credits > MAX_CREDITS:
        return f"must be at most {MAX_CREDITS}"
    return None


def credit(credits: int) -> str | None:
    """Credits added to (negative: removed from) a balance; 0 would be a no-op entry."""
    if credits == 0:
        return "must not be 0"
    if abs(credits) > MAX_CREDITS:
        return f"must be between -{MAX_CREDITS} and {MAX_CREDITS}"
    return None


def limit(value: int) -> str | None:
    """A limit of a key (requests, tokens, credits per period): 0 is none."""
    if value < 0:
        return "must be 0 (none) or positive"
    if value > MAX_CREDITS:
        return f"must be at most {MAX_CREDITS}"
    return None


def lifetime(seconds: float) -> str | None:
    """How long a new key lives: a zero or negative one would never expire (or be born dead)."""
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_LIFETIME_SECONDS):
        return f"must be more than 0 seconds and at most {MAX_LIFETIME_SECONDS // 86400} days"
    return None


def agent(value: str) -> str | None:
    """An agent id a key may call. Records keep them comma-joined, and an empty list
    means every agent: an empty id or one with a comma would widen the key."""
    if not value or "," in value:
        return "must be a non-empty agent id without commas"
    return None


def unserved(agents: Iterable[str], routes: Collection[str]) -> tuple[str, ...]:
    """The agents no route serves (yet: routes change live, so this is only a warning)."""
    return tuple(a for a in agents if a not in routes)


def unserved_warning(agents: Iterable[str]) -> str:
    names = ", ".join(repr(a) for a in agents)
    return (
        f"no route serves agent {names} in the current configuration; "
        "the key can call it once a route for it is added"
    )
