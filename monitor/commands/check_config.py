"""`portal-monitor check-config`: validate and print the effective configuration."""

from __future__ import annotations

import argparse
import json

from monitor.service.config import load_settings, masked, secret_values


def register(subcommands: argparse._SubParsersAction) -> None:
    from monitor.commands.cli import add_config_argument

    parser = subcommands.add_parser(
        "check-config",
        help="validate the configuration and print it, secrets masked",
        description="Load --config and PORTAL_MONITOR_* variables and check them: types, ranges "
        "(ports, speeds, counts), durations, DSNs and URLs, detector names, and that every file "
        "named (GeoIP databases, network lists, TLS files, secrets) is there and readable. Report "
        "the first bad key (exit 2), or print the effective settings as JSON with secrets masked "
        "and, on stderr, which detectors they leave on and off. --connect also tries PostgreSQL, "
        "Kafka, MQTT and the GeoIP databases and says what works (exit 1 if something does not).",
    )
    add_config_argument(parser)
    parser.add_argument("--connect", action="store_true",
                        help="also try the servers and databases the settings name, each within --timeout")
    parser.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                        help="how long to wait for each server with --connect (default: 5)")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing but problems (for scripts)")
    parser.set_defaults(func=check_config)


async def check_config(args: argparse.Namespace) -> int:
    import sys

    from monitor.commands.replay import require_files
    from monitor.service.checks import describe_states, detector_states, try_connections
    from monitor.support.logging import configure_logging

    settings = load_settings(args.config)
    require_files(settings)
    if not args.quiet:
        print(json.dumps(masked(settings), indent=2, sort_keys=True))
        for line in describe_states(detector_states(settings, registry=settings.accounts.registry)):
            print(line, file=sys.stderr)
    if not args.connect:
        return 0
    if not 0 < args.timeout <= 600:
        print("portal-monitor: --timeout: give seconds between 0 and 600", file=sys.stderr)
        return 2
    configure_logging(getattr(args, "log_level", None) or "error", settings.logging.format,
                      secrets=secret_values(settings))
    failed = False
    for check in await try_connections(settings, args.timeout):
        word = {True: "ok", False: "FAILED", None: "skipped"}[check.ok]
        failed = failed or check.ok is False
        if check.ok is False or not args.quiet:
            print(f"{check.component:<18} {word:<8} {check.detail}", file=sys.stderr)
    return 1 if failed else 0
