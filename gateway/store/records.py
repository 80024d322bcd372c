"""Frozen records read from and written to the store."""

from __future__ import annotations

import dataclasses
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from gateway import amounts
from gateway.events import Usage


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """An API key's limits (0: none). Admission checks a route's shared limits in this
    form too; ``gateway.route.RouteLimits`` is how a route declares them."""

    rpm: int = 0  # requests per minute
    tpm: int = 0  # tokens (input + output) per minute
    max_concurrent: int = 0  # requests in flight
    daily_budget: int = 0  # credits per UTC day
    monthly_budget: int = 0  # credits per UTC month

    def check(self) -> None:
        """Each limit a whole number in range (``gateway.amounts``), or a 400 naming it."""
        for name in LIMIT_FIELDS:
            amounts.count(getattr(self, name), f"limits.{name}")

    @property
    def budgeted(self) -> bool:
        """Whether a daily or monthly budget is set."""
        return bool(self.daily_budget or self.monthly_budget)

    def to_hash(self) -> dict[str, str]:
        """The fields of a key record that hold these limits."""
        return {name: str(getattr(self, name)) for name in LIMIT_FIELDS}


LIMIT_FIELDS = tuple(f.name for f in dataclasses.fields(KeyLimits))


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key's record; never its secret."""

    id: str
    name: str
    agents: tuple[str, ...] = ()  # empty: every agent
    created_at: float = 0.0
    expires_at: float | None = None
    revoked_at: float | None = None
    hint: str = ""  # the secret's first characters, to recognise it in a list
    limits: KeyLimits = field(default_factory=KeyLimits)
    note: str = ""  # free text for people: who it is for, a ticket number...
    # Rotation. Digests only, never a secret: the current secret's, and the one it
    # replaced, accepted until ``previous_expires_at`` (the grace period). A record
    # written before rotation existed has no digest: whatever digest the index maps
    # to it is its current one.
    digest: str = ""
    previous_digest: str = ""
    previous_expires_at: float | None = None
    rotated_at: float | None = None
    # Teams (gateway/store/teams.py): the team whose balance this key spends ("": its
    # own), that team's limits (read with the key, not stored in its record), and
    # whether a move between teams is under way (its requests are refused meanwhile).
    team: str = ""
    team_limits: KeyLimits = field(default_factory=KeyLimits)
    moving: bool = False

    def usable(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def allows(self, agent: str) -> bool:
        return not self.agents or agent in self.agents

    def to_hash(self) -> dict[str, str]:
        fields = {
            "id": self.id,
            "name": self.name,
            "agents": ",".join(self.agents),
            "created_at": repr(self.created_at),
            "hint": self.hint,
            "note": self.note,
            "digest": self.digest,
            "previous_digest": self.previous_digest,
        }
        for name in ("expires_at", "revoked_at", "previous_expires_at", "rotated_at"):
            value = getattr(self, name)
            if value is not None:
                fields[name] = repr(value)
        fields.update(self.limits.to_hash())
        if self.team:
            fields["team"] = self.team
        return fields

    @classmethod
    def from_hash(cls, h: Mapping[str, str]) -> ApiKey:
        def when(name: str) -> float | None:
            value = h.get(name)
            return float(value) if value else None

        return cls(
            id=h["id"],
            name=h.get("name", ""),
            agents=tuple(a for a in h.get("agents", "").split(",") if a),
            created_at=float(h.get("created_at") or 0),
            expires_at=when("expires_at"),
            revoked_at=when("revoked_at"),
            hint=h.get("hint", ""),
            limits=KeyLimits(**{name: int(h.get(name) or 0) for name in LIMIT_FIELDS}),
            note=h.get("note", ""),
            digest=h.get("digest", ""),
            previous_digest=h.get("previous_digest", ""),
            previous_expires_at=when("previous_expires_at"),
            rotated_at=when("rotated_at"),
            team=h.get("team", ""),
            moving=bool(h.get("moving")),
        )

    def for_digest(self, digest: str, now: float) -> ApiKey | None:
        """The record as presented with the secret of this digest, or ``None`` if that
        secret is no longer accepted: a rotated-out secret carries its grace period as
        its expiry, so the authenticator's cache refuses it on time too."""
        if not self.digest or hmac.compare_digest(digest, self.digest):
            return self
        if (
            self.previous_digest
            and hmac.compare_digest(digest, self.previous_digest)
            and self.previous_expires_at is not None
            and now < self.previous_expires_at
        ):
            ends = self.previous_expires_at
            expires_at = ends if self.expires_at is None else min(ends, self.expires_at)
            return dataclasses.replace(self, expires_at=expires_at)
        return None

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "agents": list(self.agents),
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
            "hint": self.hint,
            "limits": {name: getattr(self.limits, name) for name in LIMIT_FIELDS},
            "note": self.note,
            "rotated_at": self.rotated_at,
            "previous_expires_at": self.previous_expires_at,
            "team": self.team or None,
        }


_USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One ledger line. ``amount`` is signed: charges negative, top-ups positive."""

    id: str
    kind: str  # "usage" or "credit"
    amount: int
    balance: int
    at: float
    request_id: str = ""
    agent: str = ""
    backend: str = ""
    usage: Usage | None = None
    note: str = ""
    held: int = 0  # credits the request had reserved
    started_at: float = 0.0
    reaped: bool = False  # settled by the reaper after its process died
    unbilled: int = 0  # credits of reported usage beyond the hold, not charged
    key_id: str = ""  # in a team's ledger: the key whose request this was

    @classmethod
    def from_stream(cls, entry_id: str, f: Mapping[str, str]) -> LedgerEntry:
        usage = None
        if f.get("kind") == "usage":
            counts = {name: _whole(f.get(name)) for name in _USAGE_FIELDS}
            usage = Usage(**counts, estimated=f.get("estimated") == "1")
        return cls(
            id=entry_id,
            kind=f.get("kind", ""),
            amount=_whole(f.get("amount")),
            balance=_whole(f.get("balance")),
            at=float(f.get("at") or 0),
            request_id=f.get("request_id", ""),
            agent=f.get("agent", ""),
            backend=f.get("backend", ""),
            usage=usage,
            note=f.get("note", ""),
            held=_whole(f.get("held")),
            started_at=float(f.get("started_at") or 0),
            reaped=f.get("reaped") == "1",
            unbilled=_whole(f.get("unbilled")),
            key_id=f.get("key_id", ""),
        )

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "id": self.id,
            "kind": self.kind,
            "amount": self.amount,
            "balance": self.balance,
            "at": self.at,
        }
        if self.kind == "usage" and self.usage is not None:
            out.update(request_id=self.request_id, agent=self.agent, backend=self.backend)
            out.update({name: getattr(self.usage, name) for name in _USAGE_FIELDS})
            out["estimated"] = self.usage.estimated
            out.update(held=self.held, started_at=self.started_at, reaped=self.reaped)
            out["unbilled"] = self.unbilled
        if self.note:
            out["note"] = self.note
        if self.key_id:
            out["key_id"] = self.key_id
        return out


@dataclass(frozen=True, slots=True)
class Team:
    """A team: a shared balance (under its own id) and limits over any number of keys;
    each key's own limits are caps inside the team's."""

    id: str
    name: str
    created_at: float = 0.0
    limits: KeyLimits = field(default_factory=KeyLimits)
    note: str = ""

    def to_hash(self) -> dict[str, str]:
        fields = {"id": self.id, "name": self.name, "created_at": repr(self.created_at)}
        return fields | {"note": self.note} | self.limits.to_hash()

    @classmethod
    def from_hash(cls, h: Mapping[str, str]) -> Team:
        return cls(
            id=h["id"],
            name=h.get("name", ""),
            created_at=float(h.get("created_at") or 0),
            limits=KeyLimits(**{name: int(h.get(name) or 0) for name in LIMIT_FIELDS}),
            note=h.get("note", ""),
        )

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "created_at": self.created_at,
            "limits": {name: getattr(self.limits, name) for name in LIMIT_FIELDS},
            "note": self.note,
        }


AUDIT_ACTIONS = (
    "key.create",
    "key.revoke",
    "key.rotate",
    "key.credit",
    "key.limits",
    "key.move",
    "team.create",
    "team.credit",
    "team.limits",
)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One admin action: who (``cli:<user>`` or ``admin-api:<address>``), what, on which
    key, when, and its parameters (never a secret or a token)."""

    id: str
    at: float
    actor: str
    action: str
    key_id: str
    details: Mapping[str, object] = field(default_factory=dict)

    @classmethod
    def from_stream(cls, entry_id: str, f: Mapping[str, str]) -> AuditEntry:
        try:
            details = json.loads(f.get("details") or "{}")
        except ValueError:
            details = {}
        return cls(
            id=entry_id,
            at=float(f.get("at") or 0),
            actor=f.get("actor", ""),
            action=f.get("action", ""),
            key_id=f.get("key_id", ""),
            details=details if isinstance(details, dict) else {},
        )

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "key_id": self.key_id,
            "details": dict(self.details),
        }


def _whole(text: str | None) -> int:
    """An integer field of a stream entry. Entries written before amounts were printed
    with %d may hold an integer as a float (``-2.0000000000001e+14``): read exactly."""
    if not text:
        return 0
    try:
        return int(text)
    except ValueError:
        return int(Decimal(text))
