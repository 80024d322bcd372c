"""The ``gateway`` command's parser: where options go, --version, plain help."""

from __future__ import annotations

import argparse
from importlib.metadata import version

import pytest

from gateway.cli import main


def parse(*argv: str) -> argparse.Namespace:
    return main.parser().parse_args(argv)


@pytest.fixture(autouse=True)
def _no_env_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)


@pytest.mark.parametrize(
    "argv",
    [
        ("--config", "a.yaml", "--json", "keys", "list"),
        ("keys", "list", "--config", "a.yaml", "--json"),
        ("keys", "--config", "a.yaml", "list", "--json"),
        ("--json", "config", "check", "--config", "a.yaml"),
        ("--config", "a.yaml", "--json", "balance", "show", "key_x"),
        ("--config", "a.yaml", "--json", "usage", "key_x"),
        ("--config", "a.yaml", "--json", "audit"),
        ("--config", "a.yaml", "serve", "--json"),
    ],
)
def test_common_options_go_before_or_after_the_subcommand(argv: tuple[str, ...]) -> None:
    args = parse(*argv)
    assert (args.config, args.json) == ("a.yaml", True)


def test_the_value_given_after_the_subcommand_wins() -> None:
    args = parse("--config", "before.yaml", "keys", "list", "--config", "after.yaml")
    assert args.config == "after.yaml"
    assert parse("--config", "before.yaml", "keys", "--config", "mid.yaml", "list").config == (
        "mid.yaml"
    )


def test_defaults_come_from_the_environment_then_the_working_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    args = parse("keys", "list")
    assert (args.config, args.json) == ("gateway.yaml", False)
    monkeypatch.setenv("GATEWAY_CONFIG", "/etc/gw.yaml")
    assert parse("keys", "list").config == "/etc/gw.yaml"
    assert parse("keys", "list", "--config", "x.yaml").config == "x.yaml"


def test_version_is_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse("--version")
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"gateway {version('agent-gateway')}\n"


def _every_parser(
    parser: argparse.ArgumentParser, name: str = "gateway"
) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(name, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                found += _every_parser(sub, f"{name} {sub_name}")
    return found


def test_every_help_is_plain_text() -> None:
    parsers = _every_parser(main.parser())
    assert {"gateway", "gateway keys create", "gateway config check"} <= {n for n, _ in parsers}
    for name, parser in parsers:
        text = parser.format_help()
        assert "``" not in text and "`" not in text, (name, text)  # reStructuredText markup
