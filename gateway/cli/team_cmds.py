"""``gateway teams``: create, list and show teams, and set their limits.

A team's balance and ledger go through ``gateway balance`` and ``gateway usage`` with
its id; a key joins one with ``keys create --team`` or ``keys move``.
"""

from __future__ import annotations

import argparse
from typing import Any

from gateway import key_rules
from gateway.cli.output import emit_json, emit_table
from gateway.cli.store_cmds import (
    _checked,
    _limit_options,
    _limits_of,
    _runner,
    _when,
    actor,
    name_and_balance,
)
from gateway.store import Store
from gateway.store.records import LIMIT_FIELDS, Team
from gateway.store.teams import Teams


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    teams = commands.add_parser(
        "teams", parents=[common], help="teams: a balance and limits shared by their keys"
    )
    ts = teams.add_subparsers(dest="teams_command", required=True, metavar="COMMAND")
    create = ts.add_parser("create", parents=[common], help="create a team")
    name_and_balance(create)
    create.add_argument("--note", default="", type=_checked(str, key_rules.note))
    _limit_options(create)
    create.set_defaults(run=_runner(_create))
    ts.add_parser("list", parents=[common], help="list teams").set_defaults(run=_runner(_list))
    show = ts.add_parser("show", parents=[common], help="a team, its balance and its keys")
    show.add_argument("id")
    show.set_defaults(run=_runner(_show))
    limits = ts.add_parser("limits", parents=[common], help="set a team's limits (0: none)")
    limits.add_argument("id")
    _limit_options(limits)
    limits.set_defaults(run=_runner(_limits))


_HEADER = ["ID", "NAME", "CREATED", "LIMITS"]


def _row(team: Team) -> list[object]:
    limits = " ".join(
        f"{k}={getattr(team.limits, k)}" for k in LIMIT_FIELDS if getattr(team.limits, k)
    )
    return [team.id, team.name, _when(team.created_at), limits or "-"]


async def _create(store: Store, args: argparse.Namespace) -> None:
    team = await Teams(store).create(
        args.name, balance=args.balance, limits=_limits_of(args), note=args.note, actor=actor()
    )
    if args.json:
        emit_json({**team.to_json(), "balance": args.balance})
    else:
        print(f"Created team {team.id} ({team.name}) with {args.balance} credits.")


async def _list(store: Store, args: argparse.Namespace) -> None:
    teams = await Teams(store).all()
    if args.json:
        emit_json([t.to_json() for t in teams])
    else:
        emit_table([_row(t) for t in teams], _HEADER)


async def _show(store: Store, args: argparse.Namespace) -> None:
    teams = Teams(store)
    team = await teams.get(args.id)
    balance, held = await store.balance(team.id), await store.held(team.id)
    members = await teams.members(team.id)
    if args.json:
        emit_json({**team.to_json(), "balance": balance, "held": held, "keys": members})
        return
    emit_table([[*_row(team), balance, held]], [*_HEADER, "BALANCE", "HELD"])
    print(f"keys: {', '.join(members) or '(none)'}")


async def _limits(store: Store, args: argparse.Namespace) -> None:
    team = await Teams(store).set_limits(args.id, _limits_of(args), actor=actor())
    if args.json:
        emit_json(team.to_json())
    else:
        print(f"Limits of {team.id} set: {team.to_json()['limits']}")
