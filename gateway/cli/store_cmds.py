"""``gateway keys|balance|usage``: manage keys, balances and the ledger in Redis."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from gateway import key_rules
from gateway.cli.output import CommandError, emit_json, emit_table
from gateway.config import load_auth_settings, load_redis_settings, load_route_names
from gateway.errors import GatewayError
from gateway.store import ApiKey, Store, connect, erasure, ledger_export
from gateway.store.records import KeyLimits, LedgerEntry
from gateway.store.settings import EMBEDDED
from gateway.store.store import DEFAULT_GRACE_SECONDS
from gateway.store.teams import MOVE_MARGIN_SECONDS, Teams, is_team

_DURATION = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``90s``, ``15m``, ``12h``, ``30d``, ``2w`` or combinations like ``1d12h``, in seconds."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (e.g. 30d, 12h, 1d12h)")
    return float(sum(int(n) * _UNITS[u] for n, u in parts))


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    keys = commands.add_parser(
        "keys", parents=[common], help="create, list, show and revoke API keys"
    )
    ks = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    create = ks.add_parser("create", parents=[common], help="create a key (printed once)")
    name_and_balance(create)
    create.add_argument(
        "--agent",
        action="append",
        default=[],
        type=_checked(str, key_rules.agent),
        help="an agent the key may call (repeatable; default: every agent). One that no "
        "route of --config serves is accepted with a warning: routes can be added later",
    )
    create.add_argument(
        "--expires-in",
        type=_checked(parse_duration, key_rules.lifetime),
        help="e.g. 30d, 12h (more than 0; default: never)",
    )
    create.add_argument("--note", default="", type=_checked(str, key_rules.note), help=_NOTE)
    create.add_argument("--team", default="", help="the team whose balance the key spends")
    _limit_options(create)
    create.set_defaults(run=_runner(_create))
    move = ks.add_parser(
        "move",
        parents=[common],
        help="move a key into, out of or between teams (refused while it has requests in flight)",
    )
    move.add_argument("id")
    into = move.add_mutually_exclusive_group(required=True)
    into.add_argument("--team", help="the team to move it into")
    into.add_argument(
        "--no-team", action="store_true", help="out of its team, onto its own balance"
    )
    move.set_defaults(run=_runner(_move))
    limits = ks.add_parser("limits", parents=[common], help="set a key's limits (0: none)")
    limits.add_argument("id")
    _limit_options(limits)
    limits.set_defaults(run=_runner(_limits))
    ks.add_parser("list", parents=[common], help="list keys").set_defaults(run=_runner(_list))
    show = ks.add_parser("show", parents=[common], help="show one key")
    show.add_argument("id")
    show.set_defaults(run=_runner(_show))
    revoke = ks.add_parser(
        "revoke", parents=[common], help="revoke a key (refused everywhere within auth.cache_ttl)"
    )
    revoke.add_argument("id")
    revoke.add_argument(
        "--purge",
        action="store_true",
        help="then erase its stored conversations (as keys purge), revoked already or not",
    )
    revoke.set_defaults(run=_runner(_revoke))
    purge = ks.add_parser(
        "purge",
        parents=[common],
        help="erase a key's stored conversations (not its ledger); resumable, idempotent",
    )
    purge.add_argument("id")
    purge.add_argument(
        "--scan",
        action="store_true",
        help="also SCAN Redis for responses, A2A tasks and contexts stored before the "
        "per-key indexes existed (as long as the keyspace is large)",
    )
    purge.set_defaults(run=_runner(_purge))
    rotate = ks.add_parser(
        "rotate", parents=[common], help="a new secret; the old one works for a grace period"
    )
    rotate.add_argument("id")
    rotate.add_argument(
        "--grace",
        type=_duration_or_zero,
        default=DEFAULT_GRACE_SECONDS,
        help="how long the old secret keeps working (default 24h; 0: refused at once)",
    )
    rotate.set_defaults(run=_runner(_rotate))

    audit = commands.add_parser("audit", parents=[common], help="the admin actions, newest first")
    audit.add_argument("--limit", type=_positive, default=50, help="at most this many (50)")
    audit.set_defaults(run=_runner(_audit))

    balance = commands.add_parser("balance", parents=[common], help="show or add credits")
    bs = balance.add_subparsers(dest="balance_command", required=True, metavar="COMMAND")
    bshow = bs.add_parser("show", parents=[common], help="a key's or a team's balance in credits")
    bshow.add_argument("id")
    bshow.set_defaults(run=_runner(_balance_show))
    badd = bs.add_parser("add", parents=[common], help="add credits (negative to remove)")
    badd.add_argument("id")
    badd.add_argument("credits", type=_checked(int, key_rules.credit))
    badd.add_argument("--note", default="", type=_checked(str, key_rules.note), help=_NOTE)
    badd.set_defaults(run=_runner(_balance_add))

    usage = commands.add_parser(
        "usage",
        parents=[common],
        help="a key's or a team's ledger (a team key's: the team's, its own)",
    )
    usage.add_argument("id")
    usage.add_argument("--limit", type=_positive, help="at most this many entries (oldest first)")
    usage.add_argument("--agent", help="only this agent's usage")
    usage.add_argument("--kind", choices=ledger_export.KINDS, help="only usage or credit entries")
    usage.add_argument("--since", type=_time, help="from this time (UNIX seconds or ISO-8601)")
    usage.add_argument("--until", type=_time, help="before this time (UNIX seconds or ISO-8601)")
    usage.add_argument(
        "--format",
        choices=("table", *ledger_export.FORMATS),
        help="output format (default: table, or json with --json)",
    )
    usage.set_defaults(run=_runner(_usage))


_NOTE = "free text: who it is for, a ticket..."
T = TypeVar("T")


def _checked(convert: Callable[[str], T], check: Callable[[T], str | None]) -> Callable[[str], T]:
    """An argparse ``type``: ``convert``, then the check the admin API applies too
    (``gateway.key_rules``); a failure is a usage error (exit 2) naming the option."""

    def parse(text: str) -> T:
        value = convert(text)  # a ValueError reads "invalid int value: 'x'"
        problem = check(value)
        if problem is not None:
            raise argparse.ArgumentTypeError(problem)
        return value

    parse.__name__ = getattr(convert, "__name__", "value")
    return parse


def _duration_or_zero(text: str) -> float:
    return 0.0 if text.strip() == "0" else parse_duration(text)


def actor() -> str:
    """Who the audit log names for a command: the OS user running it."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid-{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"cli:{user}"


def _time(text: str) -> float:
    try:
        return ledger_export.parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, not {text!r}")
    return int(text)


def name_and_balance(parser: argparse.ArgumentParser) -> None:
    """``--name`` and ``--balance``, checked as the admin API checks them: what ``keys
    create`` and ``teams create`` share, kept in step here."""
    parser.add_argument("--name", required=True, type=_checked(str, key_rules.name))
    parser.add_argument(
        "--balance",
        type=_checked(int, key_rules.balance),
        default=0,
        help="initial credits, 0 or more (1e6 = 1 USD)",
    )


def _limit_options(parser: argparse.ArgumentParser) -> None:
    limit = _checked(int, key_rules.limit)
    parser.add_argument("--rpm", type=limit, default=0, help="requests per minute")
    parser.add_argument("--tpm", type=limit, default=0, help="tokens per minute (input + output)")
    parser.add_argument("--max-concurrent", type=limit, default=0, help="requests in flight")
    parser.add_argument("--daily-budget", type=limit, default=0, help="credits per UTC day")
    parser.add_argument("--monthly-budget", type=limit, default=0, help="credits per UTC month")


def _limits_of(args: argparse.Namespace) -> KeyLimits:
    return KeyLimits(
        args.rpm, args.tpm, args.max_concurrent, args.daily_budget, args.monthly_budget
    )


Action = Callable[[Store, argparse.Namespace], Awaitable[None]]


def _runner(action: Action) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        settings = load_redis_settings(args.config)
        if settings.url == EMBEDDED:
            raise CommandError(
                "redis.url is 'embedded': that store lives inside a running `gateway serve` "
                "and cannot be reached from here. Point GATEWAY_REDIS_URL (or redis.url) at Redis."
            )

        async def go() -> None:
            store = Store(connect(settings))
            try:
                await action(store, args)
            finally:
                await store.aclose()

        asyncio.run(go())
        return 0

    return run


def _when(ts: float | None) -> str:
    if not ts:
        return ""
    try:
        return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):  # beyond the year 9999: from an older API
        return repr(ts)


def _key_row(key: ApiKey, now: float) -> list[object]:
    state = "revoked" if key.revoked_at else ("expired" if not key.usable(now) else "active")
    agents = ",".join(key.agents) or "*"
    return [key.id, key.name, key.hint + "...", state, agents, _when(key.expires_at)]


_KEY_HEADER = ["ID", "NAME", "KEY", "STATE", "AGENTS", "EXPIRES"]


async def _create(store: Store, args: argparse.Namespace) -> None:
    unserved = key_rules.unserved(args.agent, load_route_names(args.config))
    if unserved:
        print(f"gateway: warning: {key_rules.unserved_warning(unserved)}", file=sys.stderr)
    expires_at = time.time() + args.expires_in if args.expires_in else None
    key, secret = await store.create_key(
        args.name,
        balance=args.balance,
        agents=tuple(args.agent),
        expires_at=expires_at,
        limits=_limits_of(args),
        note=args.note,
        actor=actor(),
        team=args.team,
    )
    if args.json:
        emit_json({**key.to_json(), "key": secret, "balance": args.balance})
        return
    if key.team:
        print(f"Created key {key.id} ({key.name}) in team {key.team}, spending its balance.")
    else:
        print(f"Created key {key.id} ({key.name}) with {args.balance} credits.")
    print("Its secret is shown only now; store it safely:")
    print(secret)


async def _list(store: Store, args: argparse.Namespace) -> None:
    keys = await store.list_keys()
    if args.json:
        emit_json([k.to_json() for k in keys])
    else:
        now = time.time()
        emit_table([_key_row(k, now) for k in keys], _KEY_HEADER)


async def _show(store: Store, args: argparse.Namespace) -> None:
    key = await store.get_key(args.id)
    balance = await store.balance(key.id)
    if args.json:
        emit_json({**key.to_json(), "balance": balance})
    else:
        emit_table([[*_key_row(key, time.time()), balance]], [*_KEY_HEADER, "BALANCE"])


async def _limits(store: Store, args: argparse.Namespace) -> None:
    key = await store.set_limits(args.id, _limits_of(args), actor=actor())
    if args.json:
        emit_json(key.to_json())
    else:
        print(f"Limits of {key.id} set: {key.to_json()['limits']}")


async def _revoke(store: Store, args: argparse.Namespace) -> None:
    already = False
    try:
        key = await store.revoke_key(args.id, actor=actor())
    except GatewayError as exc:
        if not (args.purge and exc.code == "key_revoked"):
            raise
        key = await store.get_key(args.id)  # revoked already: the purge still runs
        already = True
    purged = await _erase(store, args) if args.purge else None
    if args.json:
        erased = {} if purged is None else {"purged": purged.to_json()["purged"]}
        emit_json(key.to_json() | erased)
        return
    if already:
        print(f"Key {key.id} ({key.name}) was revoked already (at {_when(key.revoked_at)}).")
    else:
        print(f"Revoked key {key.id} ({key.name}).")
    if purged is not None:
        print(f"Erased its {_erased(purged)}.")


async def _purge(store: Store, args: argparse.Namespace) -> None:
    purged = await _erase(store, args)
    if args.json:
        emit_json(purged.to_json())
    else:
        print(f"Erased {_erased(purged)} of {purged.key_id}; its ledger stays.")


def _erased(purged: erasure.PurgeResult) -> str:
    tasks, contexts = purged.count(erasure.A2A_TASKS), purged.count(erasure.A2A_CONTEXTS)
    return f"{purged.responses} stored responses, {tasks} A2A tasks and {contexts} A2A contexts"


async def _erase(store: Store, args: argparse.Namespace) -> erasure.PurgeResult:
    step = erasure.BATCH * 20  # a line every 10,000 listed values
    shown = 0  # the multiples of step already reported (a batch can be short)

    def progress(walked: int) -> None:
        nonlocal shown
        if not args.json and walked // step > shown:
            shown = walked // step
            print(f"... {shown * step} listed values erased", file=sys.stderr)

    scan = getattr(args, "scan", False)  # `keys revoke --purge` walks the index only
    return await erasure.purge_key(store, args.id, actor=actor(), progress=progress, scan=scan)


async def _rotate(store: Store, args: argparse.Namespace) -> None:
    key, secret = await store.rotate_key(args.id, grace_seconds=args.grace, actor=actor())
    if args.json:
        emit_json({**key.to_json(), "key": secret})
        return
    print(f"Rotated key {key.id} ({key.name}); its balance, ledger and limits are unchanged.")
    if args.grace:
        print(f"The old secret works until {_when(key.previous_expires_at)}.")
    else:
        print("The old secret is refused from now on.")
    print("The new secret is shown only now; store it safely:")
    print(secret)


async def _audit(store: Store, args: argparse.Namespace) -> None:
    entries = await store.audit_log(limit=args.limit)
    if args.json:
        emit_json([e.to_json() for e in entries])
        return
    rows = [[_when(e.at), e.actor, e.action, e.key_id, _details(e.details)] for e in entries]
    emit_table(rows, ["AT", "WHO", "ACTION", "KEY", "DETAILS"])


def _details(details: Mapping[str, object]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(details.items()) if v not in (None, "", [], {}))


async def _move(store: Store, args: argparse.Namespace) -> None:
    # Every serving process must have seen the key's mark: their auth cache's life, and a margin.
    wait = load_auth_settings(args.config).cache_ttl + MOVE_MARGIN_SECONDS
    target = None if args.no_team else args.team
    key = await Teams(store).move(args.id, target, actor=actor(), wait=wait)
    if args.json:
        emit_json(key.to_json())
    elif key.team:
        print(f"Key {key.id} is in team {key.team}: it spends the team's balance.")
    else:
        print(f"Key {key.id} is in no team: it spends its own balance.")


async def _balance_show(store: Store, args: argparse.Namespace) -> None:
    team = ""  # a team's key: its own balance is shown, but it spends the team's
    if is_team(args.id):
        account = (await Teams(store).get(args.id)).id
    else:
        key = await store.get_key(args.id)
        account, team = key.id, key.team or ""
    balance = await store.balance(account)
    held = await store.held(account)
    if args.json:
        shown: dict[str, object] = {
            "id": account, "balance": balance, "held": held, "available": balance - held
        }  # fmt: skip
        emit_json(shown | ({"team": team} if team else {}))
    else:
        print(
            f"{account}: {balance} credits ({balance / 1_000_000:.6f} USD), "
            f"{held} held by requests in flight"
        )
        if team:
            print(
                f"It spends the balance of its team {team} (gateway balance show {team}); "
                "its own applies again if it leaves the team."
            )


async def _balance_add(store: Store, args: argparse.Namespace) -> None:
    if is_team(args.id):
        balance = await Teams(store).credit(args.id, args.credits, note=args.note, actor=actor())
    else:
        balance = await store.credit(args.id, args.credits, note=args.note, actor=actor())
    if args.json:
        emit_json({"id": args.id, "balance": balance})
    else:
        print(f"{args.id}: {balance} credits")


async def _usage(store: Store, args: argparse.Namespace) -> None:
    query = ledger_export.LedgerQuery(
        agent=args.agent, kind=args.kind, since=args.since, until=args.until, limit=args.limit
    )
    entries: AsyncIterator[LedgerEntry]
    if is_team(args.id):
        await Teams(store).get(args.id)
        entries = ledger_export.entries(store, args.id, query)
    else:  # its own ledger's entries, and its entries in each team's it has been in
        entries = ledger_export.key_entries(store, await store.get_key(args.id), query)
    fmt = args.format or ("json" if args.json else "table")
    if fmt != "table":
        chunks = (
            ledger_export.json_array(entries, pretty=True)
            if fmt == "json"
            else ledger_export.render(entries, fmt)
        )
        async for chunk in chunks:
            sys.stdout.write(chunk)
        return
    team = is_team(args.id)  # a team's ledger mixes its keys' requests: say whose
    rows = []
    async for e in entries:
        u = e.usage
        tokens = f"{u.input_tokens}/{u.output_tokens}{'~' if u.estimated else ''}" if u else ""
        row = [_when(e.at), e.kind, e.agent or e.note, tokens, e.amount, e.balance]
        rows.append([*row, e.key_id] if team else row)
    header = ["AT", "KIND", "AGENT/NOTE", "TOKENS IN/OUT", "CREDITS", "BALANCE"]
    emit_table(rows, [*header, "KEY"] if team else header)
