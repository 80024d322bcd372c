"""``gateway``: serve, check the configuration, manage keys, balances and usage."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from gateway.cli import config_cmd, serve, store_cmds, team_cmds
from gateway.cli.output import CommandError
from gateway.errors import ConfigError, GatewayError

DEFAULT_CONFIG = "gateway.yaml"
DISTRIBUTION = "agent-gateway"
DESCRIPTION = "Serve, check the configuration, manage keys, balances and usage."
# What a shell reports for a process killed by SIGPIPE (128 + 13): `set -o pipefail`
# scripts see the same status as for any other writer a reader stopped early.
EXIT_BROKEN_PIPE = 141


def add_common_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """``--config`` and ``--json``, defined once for every level of the command.

    Only the top level has defaults. Below it they are ``SUPPRESS``ed: argparse copies
    a subcommand's namespace over its parent's, so a default there would undo
    ``gateway --config X keys list``, while an option given after the subcommand
    still replaces one given before it.
    """
    parser.add_argument(
        "--config",
        default=os.environ.get("GATEWAY_CONFIG", DEFAULT_CONFIG) if defaults else argparse.SUPPRESS,
        help="path of gateway.yaml (default: $GATEWAY_CONFIG or ./gateway.yaml)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=False if defaults else argparse.SUPPRESS,
        help="print JSON",
    )


def installed_version() -> str:
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    add_common_options(common, defaults=False)

    top = argparse.ArgumentParser(prog="gateway", description=DESCRIPTION)
    top.add_argument("--version", action="version", version=f"%(prog)s {installed_version()}")
    add_common_options(top, defaults=True)
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve.register(commands, common)
    config_cmd.register(commands, common)
    store_cmds.register(commands, common)
    team_cmds.register(commands, common)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _run(argv)
    except BrokenPipeError:
        # The reader of stdout went away (`gateway usage ID | head -1`): stop quietly.
        # Python would flush stdout once more at exit and complain about the same
        # pipe, so stdout now points at /dev/null.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE


def _run(argv: Sequence[str] | None) -> int:
    try:
        args = parser().parse_args(argv)  # --help and --version print, then exit, here
        result: int = args.run(args)
        return result
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    except (CommandError, GatewayError) as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        # What is still buffered is written now, inside the BrokenPipeError handler,
        # not at interpreter exit where the error could only be reported as ignored.
        sys.stdout.flush()
