"""``gateway config check [PATH]``."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.cli.output import emit_json
from gateway.config import load_config
from gateway.errors import ConfigError


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    config = commands.add_parser("config", parents=[common], help="work with gateway.yaml")
    sub = config.add_subparsers(dest="config_command", required=True, metavar="COMMAND")
    check = sub.add_parser("check", parents=[common], help="validate a configuration file")
    check.add_argument("path", nargs="?", help="the file to check (default: --config)")
    check.set_defaults(run=run_check)


def run_check(args: argparse.Namespace) -> int:
    path = args.path or args.config
    try:
        config = load_config(path)
    except ConfigError as exc:
        if args.json:
            emit_json(
                {
                    "ok": False,
                    "problems": [
                        {"file": p.file, "line": p.line, "path": p.path, "message": p.message}
                        for p in exc.problems
                    ],
                }
            )
            return 2
        raise
    if args.json:
        emit_json({"ok": True, "backends": list(config.backends), "routes": list(config.routes)})
    else:
        print(f"{path}: ok ({len(config.backends)} backends, {len(config.routes)} routes)")
    return 0
