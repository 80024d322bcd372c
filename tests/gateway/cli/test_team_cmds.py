"""``gateway teams`` and the team options of ``keys``, ``balance`` and ``usage``, as a user
runs them: subprocesses against the real Redis, with --json."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from gateway.cli.store_cmds import name_and_balance

ROOT = Path(__file__).resolve().parents[3]


def run(*args: str, redis_url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_REDIS_URL"] = redis_url
    config = str(ROOT / "gateway.yaml")
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args, "--json", "--config", config],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def ok(*args: str, redis_url: str) -> Any:
    done = run(*args, redis_url=redis_url)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_teams_their_balance_keys_and_moves(redis_url: str, redis_client: object) -> None:
    team = ok("teams", "create", "--name", "research", "--balance", "1000", "--rpm", "5",
              redis_url=redis_url)  # fmt: skip
    team_id = team["id"]
    assert team_id.startswith("team_") and team["limits"]["rpm"] == 5 and team["balance"] == 1000
    assert [t["id"] for t in ok("teams", "list", redis_url=redis_url)] == [team_id]
    limited = ok("teams", "limits", team_id, "--tpm", "100", redis_url=redis_url)
    assert limited["limits"]["tpm"] == 100 and limited["limits"]["rpm"] == 0

    key = ok("keys", "create", "--name", "ci", "--team", team_id, redis_url=redis_url)
    assert key["team"] == team_id
    assert ok("balance", "add", team_id, "500", redis_url=redis_url)["balance"] == 1500
    shown = ok("balance", "show", team_id, redis_url=redis_url)
    assert (shown["balance"], shown["held"], shown["available"]) == (1500, 0, 1500)
    details = ok("teams", "show", team_id, redis_url=redis_url)
    assert details["keys"] == [key["id"]] and details["balance"] == 1500
    assert [e["amount"] for e in ok("usage", team_id, redis_url=redis_url)] == [1000, 500]
    assert ok("usage", key["id"], redis_url=redis_url) == []  # the team's ledger, filtered

    out = ok("keys", "move", key["id"], "--no-team", redis_url=redis_url)
    assert out["team"] is None
    assert ok("teams", "show", team_id, redis_url=redis_url)["keys"] == []
    back = ok("keys", "move", key["id"], "--team", team_id, redis_url=redis_url)
    assert back["team"] == team_id
    actions = [e["action"] for e in ok("audit", redis_url=redis_url)]
    assert actions[:3] == ["key.move", "key.move", "team.credit"]


def test_team_errors_are_clean(redis_url: str, redis_client: object) -> None:
    missing = run("balance", "add", "team_missing", "5", redis_url=redis_url)
    assert missing.returncode == 1 and "no team with id 'team_missing'" in missing.stderr
    unknown = run("keys", "create", "--name", "k", "--team", "team_missing", redis_url=redis_url)
    assert unknown.returncode == 1 and "Traceback" not in unknown.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ("keys", "move", "key_x"),
        ("keys", "move", "key_x", "--team", "team_x", "--no-team"),
        ("teams", "create", "--name", "x", "--balance", "-1"),
        ("teams", "limits", "team_x", "--rpm", "-1"),
    ],
)
def test_bad_team_arguments_are_usage_errors(argv: tuple[str, ...]) -> None:
    with pytest.raises(SystemExit) as exited:
        main.parser().parse_args(argv)
    assert exited.value.code == 2


def test_teams_create_and_keys_create_share_their_name_and_balance_options() -> None:
    """One helper defines both (``store_cmds.name_and_balance``): same flags, same checks."""

    def options(*command: str) -> list[tuple[tuple[str, ...], bool, object]]:
        parser = main.parser()
        for name in command:
            sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
            parser = sub.choices[name]
        return [(a.option_strings, a.required, a.default) for a in parser._actions
                if a.dest in ("name", "balance")]  # fmt: skip

    shared = argparse.ArgumentParser()
    name_and_balance(shared)
    expected = [(a.option_strings, a.required, a.default) for a in shared._actions
                if a.dest in ("name", "balance")]  # fmt: skip
    assert options("keys", "create") == options("teams", "create") == expected


def test_balance_show_of_a_team_key_names_the_team_it_spends(
    redis_url: str, redis_client: object
) -> None:
    """A team's key has a balance of its own (0, used again if it leaves the team): shown
    alone, it reads as a key that cannot spend, so the output names the team it spends."""
    team_id = ok("teams", "create", "--name", "t", "--balance", "900", redis_url=redis_url)["id"]
    key_id = ok("keys", "create", "--name", "k", "--team", team_id, redis_url=redis_url)["id"]
    shown = ok("balance", "show", key_id, redis_url=redis_url)
    assert (shown["balance"], shown["team"]) == (0, team_id)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_REDIS_URL"] = redis_url
    text = subprocess.run(
        [sys.executable, "-m", "gateway", "balance", "show", key_id, "--config",
         str(ROOT / "gateway.yaml")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    assert f"spends the balance of its team {team_id}" in text
    lone = ok("keys", "create", "--name", "lone", redis_url=redis_url)["id"]
    assert "team" not in ok("balance", "show", lone, redis_url=redis_url)


async def test_a_teams_usage_table_says_which_key_spent(
    redis_client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A team's ledger mixes its keys' requests: the table has a KEY column (what --json,
    jsonl and csv carry as key_id); a key's own table has none."""
    from gateway.cli.store_cmds import _usage
    from gateway.store import Store, schema
    from gateway.store.teams import Teams

    store = Store(redis_client)
    team = await Teams(store).create("t", balance=100)
    await redis_client.xadd(
        schema.ledger(team.id),
        {"kind": "usage", "amount": "-5", "balance": "95", "at": "1767225600",
         "agent": "echo", "input_tokens": "3", "output_tokens": "4", "key_id": "key_spender"},
    )  # fmt: skip
    args = argparse.Namespace(id=team.id, agent=None, kind=None, since=None, until=None,
                              limit=None, format=None, json=False)  # fmt: skip
    await _usage(store, args)
    header, _credit, usage = capsys.readouterr().out.splitlines()
    assert header.split()[-1] == "KEY" and usage.split()[-1] == "key_spender"
