"""`portal-monitor`: the command line. Each command group lives in `monitor/commands/`."""

from __future__ import annotations

import argparse
import asyncio
import inspect
import os
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
    "monitor.commands.migrate",
    "monitor.commands.completion",
)

EXIT_CONFIG = 2
CONFIG_ENV = "PORTAL_MONITOR_CONFIG"
SYSTEM_CONFIG = "/etc/portal-monitor/monitor.toml"
LOG_LEVELS = ("debug", "info", "warning", "error")


class Parser(argparse.ArgumentParser):
    """Usage errors in one line (what was wrong, and where to read more), exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_CONFIG, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="portal-monitor",
        description=(
            "Watch school portal logins and page views for misuse: simultaneous logins, "
            "unusual locations, dormant and revoked accounts. Configuration comes from "
            "--config FILE (TOML; else $PORTAL_MONITOR_CONFIG; else /etc/portal-monitor/monitor.toml "
            "if it exists) and PORTAL_MONITOR_* environment variables; secrets only "
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
    """`--config` and `--log-level`, on every command that reads the settings."""
    parser.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        help=f"TOML settings file (see deploy/portal-monitor.example.toml; default: ${CONFIG_ENV}, "
        f"else {SYSTEM_CONFIG} if it exists); PORTAL_MONITOR_SECTION__KEY variables override it",
    )
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        help="log level on stderr (default: [logging] level for run, warning for other commands)",
    )


def default_config(environ=None) -> str | None:
    """The settings file when --config is not given: $PORTAL_MONITOR_CONFIG, else
    /etc/portal-monitor/monitor.toml if it exists, else none (defaults and environment only)."""
    environ = os.environ if environ is None else environ
    if environ.get(CONFIG_ENV):
        return environ[CONFIG_ENV]
    if os.path.isfile(SYSTEM_CONFIG):
        return SYSTEM_CONFIG
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if "config" in args and args.config is None:
        args.config = default_config()
    try:
        result = args.func(args)
        if inspect.isawaitable(result):
            result = asyncio.run(result)
    except ConfigError as error:
        print(f"portal-monitor: configuration error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `portal-monitor alerts list | head`: the reader has what it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as error:  # the last resort: one line, never a traceback, unless asked for
        if getattr(args, "log_level", None) == "debug":
            raise
        print(f"portal-monitor: {args.command}: unexpected error: {type(error).__name__}: {error} "
              "(--log-level debug shows the traceback)", file=sys.stderr)
        return 1
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
