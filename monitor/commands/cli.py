"""`portal-monitor`: the command line. Each command group lives in `monitor/commands/`."""

from __future__ import annotations

import argparse
import asyncio
import inspect
import sys
from importlib import import_module

from monitor import __version__
from monitor.service.config import ConfigError

# Each module has `register(subcommands)`, adding its parsers with `set_defaults(func=...)`.
# `func(args)` returns an exit code; it may be a coroutine function.
COMMAND_MODULES = (
    "monitor.commands.run",
    "monitor.commands.replay",
    "monitor.commands.repartition",
    "monitor.commands.demo",
    "monitor.commands.check_config",
    "monitor.commands.alerts",
    "monitor.commands.sessions",
    "monitor.commands.pupils",
    "monitor.commands.silences",
    "monitor.commands.geoip",
    "monitor.commands.networks",
    "monitor.commands.accounts",
)

EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="portal-monitor",
        description=(
            "Watch school portal logins and page views for misuse: simultaneous logins, "
            "unusual locations, dormant and revoked accounts. Configuration comes from "
            "--config FILE (TOML) and PORTAL_MONITOR_* environment variables; secrets only "
            "from the environment or *_file keys, never from the command line."
        ),
        epilog="Run 'portal-monitor COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"portal-monitor {__version__}")
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        import_module(name).register(subcommands)
    return parser


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        help="TOML settings file (see deploy/portal-monitor.example.toml); "
        "PORTAL_MONITOR_SECTION__KEY variables override it",
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
        if inspect.isawaitable(result):
            result = asyncio.run(result)
    except ConfigError as error:
        print(f"portal-monitor: configuration error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
