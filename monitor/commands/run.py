"""`portal-monitor run`: the daemon, live from Kafka."""

from __future__ import annotations

import argparse

from monitor.service.config import load_settings, secret_values
from monitor.support.logging import configure_logging
from monitor.service.runtime import tune_garbage_collector


def register(subcommands: argparse._SubParsersAction) -> None:
    from monitor.commands.cli import add_config_argument

    parser = subcommands.add_parser(
        "run",
        help="the daemon: consume portal events from Kafka, detect, alert, serve /metrics",
        description="Consume portal.event/v1 records from the Kafka topic [source] topic in the "
        "consumer group [source] group_id, run the enabled detectors, deliver alerts to the "
        "enabled sinks and commit offsets only after they acknowledged. Serves /metrics, /livez "
        "and /readyz on [http] host:port. SIGTERM or SIGINT drains, commits and exits 0; a second "
        "signal exits at once.",
    )
    add_config_argument(parser)
    parser.set_defaults(func=run)


async def run(args: argparse.Namespace) -> int:
    from monitor.service.app import build_service

    settings = load_settings(args.config)
    configure_logging(settings.logging.level, settings.logging.format, secrets=secret_values(settings))
    service = build_service(settings)
    tune_garbage_collector()
    return await service.run()
