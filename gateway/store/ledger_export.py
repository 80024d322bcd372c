"""Exporting a key's ledger: filtered by agent, kind and time, as JSON, JSON lines or CSV.

Shared by ``gateway usage`` and the admin API. Entries are read in pages
(``XRANGE ... COUNT``), never all at once, and rendered as text chunks a caller
writes as they come.

Time ranges are ``[since, until)`` on the entry's ``at`` (UNIX seconds, written
by the gateway process). The scan is narrowed by stream ids, which are the Redis
server's milliseconds, widened by ``CLOCK_SLACK_MS`` on both sides so a clock
difference between gateway and Redis loses no entry; ``at`` then decides.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

import orjson

from gateway.store import schema
from gateway.store.records import ApiKey, LedgerEntry
from gateway.store.store import Store, guard

KINDS = ("usage", "credit")
FORMATS = ("json", "jsonl", "csv")
PAGE_SIZE = 500
CLOCK_SLACK_MS = 300_000  # 5 minutes

CSV_COLUMNS = (
    "id",
    "kind",
    "at",
    "request_id",
    "agent",
    "backend",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "estimated",
    "amount",
    "held",
    "unbilled",
    "balance",
    "reaped",
    "note",
    "key_id",  # in a team's ledger: the key whose request it was (last: older columns stay put)
)
_TEXT_COLUMNS = ("request_id", "agent", "backend", "note")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def parse_time(text: str) -> float:
    """UNIX seconds (``1767225600``, ``1767225600.5``) or ISO-8601 (naive means UTC)."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"invalid time {text!r}: give UNIX seconds or ISO-8601 "
                "(e.g. 2026-01-31 or 2026-01-31T12:00:00Z)"
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return when.timestamp()
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"invalid time {text!r}: UNIX seconds must be a non-negative number")
    return value


@dataclass(frozen=True, slots=True)
class LedgerQuery:
    """Which entries to export; ``None`` means no filter. ``limit`` counts matches."""

    agent: str | None = None
    kind: str | None = None
    since: float | None = None  # inclusive
    until: float | None = None  # exclusive
    limit: int | None = None
    key: str | None = None  # in a team's ledger: only this key's entries

    def __post_init__(self) -> None:
        if self.kind is not None and self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}")
        if self.limit is not None and self.limit < 1:
            raise ValueError("limit must be a positive number")

    def matches(self, entry: LedgerEntry) -> bool:
        return (
            (self.agent is None or entry.agent == self.agent)
            and (self.kind is None or entry.kind == self.kind)
            and (self.since is None or entry.at >= self.since)
            and (self.until is None or entry.at < self.until)
            and (self.key is None or entry.key_id == self.key)
        )

    def id_range(self) -> tuple[str, str]:
        """The stream id range that holds every entry of the time range."""
        start = "-"
        end = "+"
        if self.since is not None:
            start = f"{max(0, math.floor(self.since * 1000) - CLOCK_SLACK_MS)}-0"
        if self.until is not None:
            end = f"{math.ceil(self.until * 1000) + CLOCK_SLACK_MS}"
        return start, end


async def entries(
    store: Store, key_id: str, query: LedgerQuery, *, page_size: int = PAGE_SIZE
) -> AsyncGenerator[LedgerEntry]:
    """The key's matching entries, oldest first, read ``page_size`` at a time."""
    start, end = query.id_range()
    found = 0
    while True:
        async with guard():
            rows = cast(
                list[tuple[str, dict[str, str]]],
                await store.redis.xrange(schema.ledger(key_id), start, end, count=page_size),
            )
        for entry_id, fields in rows:
            entry = LedgerEntry.from_stream(entry_id, fields)
            if query.matches(entry):
                yield entry
                found += 1
                if query.limit is not None and found >= query.limit:
                    return
        if len(rows) < page_size:
            return
        start = _after(rows[-1][0])


async def key_places(store: Store, key: ApiKey) -> list[str]:
    """The teams whose ledgers hold entries of ``key``: every team it is or has been in."""
    async with guard():
        teams = cast(set[str], await store.redis.smembers(schema.key_teams(key.id)))
    if key.team:
        teams.add(key.team)  # put in its team before the history was kept
    return sorted(teams)


async def key_entries(
    store: Store, key: ApiKey, query: LedgerQuery, *, page_size: int = PAGE_SIZE
) -> AsyncIterator[LedgerEntry]:
    """A key's matching entries wherever they are, oldest first: its own ledger (what it
    spent on its own balance) and, filtered to it, the ledger of every team it is or has
    been in (``schema.key_teams``), so its history survives a move."""
    teams = await key_places(store, key)
    every = dataclasses.replace(query, limit=None)
    sources = [entries(store, key.id, dataclasses.replace(every, key=None), page_size=page_size)]
    sources += [
        entries(store, team, dataclasses.replace(every, key=key.id), page_size=page_size)
        for team in teams
    ]
    heads = [await anext(source, None) for source in sources]
    found = 0
    while any(head is not None for head in heads):
        i = min((i for i, h in enumerate(heads) if h is not None),
                key=lambda i: _order(cast(LedgerEntry, heads[i]).id))  # fmt: skip
        yield cast(LedgerEntry, heads[i])
        found += 1
        if query.limit is not None and found >= query.limit:
            break
        heads[i] = await anext(sources[i], None)
    for source in sources:
        await source.aclose()


def _order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _after(entry_id: str) -> str:
    """The smallest stream id greater than ``entry_id``."""
    ms, _, seq = entry_id.partition("-")
    return f"{ms}-{int(seq or 0) + 1}"


# Rendering: each function yields text chunks, one per entry (plus header/brackets).


async def render(items: AsyncIterator[LedgerEntry], fmt: str) -> AsyncIterator[str]:
    """``items`` as ``json`` (one array), ``jsonl`` or ``csv`` text chunks."""
    if fmt == "json":
        chunks = json_array(items)
    elif fmt == "jsonl":
        chunks = json_lines(items)
    elif fmt == "csv":
        chunks = csv_rows(items)
    else:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    async for chunk in chunks:
        yield chunk


async def json_array(
    items: AsyncIterator[LedgerEntry], *, pretty: bool = False
) -> AsyncIterator[str]:
    """A JSON array of ``LedgerEntry.to_json()``; ``pretty`` indents as ``emit_json`` does."""
    first = True
    async for entry in items:
        if pretty:
            text = orjson.dumps(entry.to_json(), option=orjson.OPT_INDENT_2).decode()
            body = "\n".join("  " + line for line in text.splitlines())
            yield ("[\n" if first else ",\n") + body
        else:
            yield ("[" if first else ",") + orjson.dumps(entry.to_json()).decode()
        first = False
    yield ("[]" if first else ("\n]" if pretty else "]")) + "\n"


async def json_lines(items: AsyncIterator[LedgerEntry]) -> AsyncIterator[str]:
    async for entry in items:
        yield orjson.dumps(entry.to_json()).decode() + "\n"


async def csv_rows(items: AsyncIterator[LedgerEntry]) -> AsyncIterator[str]:
    """A header row, then one row per entry in ``CSV_COLUMNS`` order."""
    yield _csv_line(CSV_COLUMNS)
    async for entry in items:
        row = csv_record(entry)
        yield _csv_line(row[name] for name in CSV_COLUMNS)


def csv_record(entry: LedgerEntry) -> dict[str, str]:
    """An entry's CSV cells. ``at`` is ISO-8601 UTC; usage cells are empty on credits."""
    u = entry.usage
    row = {
        "id": entry.id,
        "kind": entry.kind,
        "at": datetime.fromtimestamp(entry.at, UTC).isoformat(timespec="microseconds"),
        "request_id": entry.request_id,
        "agent": entry.agent,
        "backend": entry.backend,
        "input_tokens": str(u.input_tokens) if u else "",
        "output_tokens": str(u.output_tokens) if u else "",
        "cached_input_tokens": str(u.cached_input_tokens) if u else "",
        "cache_write_tokens": str(u.cache_write_tokens) if u else "",
        "reasoning_tokens": str(u.reasoning_tokens) if u else "",
        "estimated": _bool(u.estimated) if u else "",
        "amount": str(entry.amount),
        "held": str(entry.held) if entry.kind == "usage" else "",
        "unbilled": str(entry.unbilled) if entry.kind == "usage" else "",
        "balance": str(entry.balance),
        "reaped": _bool(entry.reaped) if entry.kind == "usage" else "",
        "note": entry.note,
        "key_id": entry.key_id,
    }
    for name in _TEXT_COLUMNS:
        row[name] = _defuse(row[name])
    return row


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _defuse(text: str) -> str:
    """Keep a spreadsheet from running a text cell as a formula (CSV injection)."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def _csv_line(cells: Iterable[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(list(cells))
    return out.getvalue()


async def latest(
    store: Store, key_id: str, query: LedgerQuery, *, most: int = 100, scan: int = 10_000
) -> list[LedgerEntry]:
    """The key's ``most`` newest matching entries, newest first, reading back at most
    ``scan`` entries (what a page shows; an export reads everything)."""
    start, end = query.id_range()
    found: list[LedgerEntry] = []
    read = 0
    while read < scan:
        async with guard():
            rows = cast(
                list[tuple[str, dict[str, str]]],
                await store.redis.xrevrange(schema.ledger(key_id), end, start, count=PAGE_SIZE),
            )
        read += len(rows)
        for entry_id, fields in rows:
            entry = LedgerEntry.from_stream(entry_id, fields)
            if query.matches(entry):
                found.append(entry)
                if len(found) >= most:
                    return found
        if len(rows) < PAGE_SIZE:
            break
        end = "(" + rows[-1][0]
    return found


async def key_latest(
    store: Store, key: ApiKey, query: LedgerQuery, *, most: int = 100, scan: int = 10_000
) -> list[LedgerEntry]:
    """``latest`` of a key's whole history: its own ledger and its entries in the ledger
    of each team it is or has been in, the ``most`` newest first."""
    found = await latest(store, key.id, dataclasses.replace(query, key=None), most=most, scan=scan)
    for team in await key_places(store, key):
        mine = dataclasses.replace(query, key=key.id)
        found += await latest(store, team, mine, most=most, scan=scan)
    return sorted(found, key=lambda e: _order(e.id), reverse=True)[:most]
