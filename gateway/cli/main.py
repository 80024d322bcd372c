"""``gateway``: serve, check the configuration, manage keys, balances and usage."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from gateway.cli import config_cmd, serve, store_cmds
from gateway.cli.output import CommandError
from gateway.errors import ConfigError, GatewayError

DEFAULT_CONFIG = "gateway.yaml"


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        default=os.environ.get("GATEWAY_CONFIG", DEFAULT_CONFIG),
        help="path of gateway.yaml (default: $GATEWAY_CONFIG or ./gateway.yaml)",
    )
    common.add_argument("--json", action="store_true", help="print JSON")

    top = argparse.ArgumentParser(prog="gateway", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve.register(commands, common)
    config_cmd.register(commands, common)
    store_cmds.register(commands, common)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
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
