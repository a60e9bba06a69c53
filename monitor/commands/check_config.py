"""`portal-monitor check-config`: validate and print the effective configuration."""

from __future__ import annotations

import argparse
import json

from monitor.service.config import load_settings, masked


def register(subcommands: argparse._SubParsersAction) -> None:
    from monitor.commands.cli import add_config_argument

    parser = subcommands.add_parser(
        "check-config",
        help="validate the configuration and print it, secrets masked",
        description="Load --config and PORTAL_MONITOR_* variables, report the first bad key "
        "(exit 2) or print the effective settings as JSON with secrets masked.",
    )
    add_config_argument(parser)
    parser.set_defaults(func=check_config)


def check_config(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    print(json.dumps(masked(settings), indent=2, sort_keys=True))
    return 0
