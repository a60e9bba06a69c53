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
    import structlog

    from monitor.commands._shared import log_level
    from monitor.commands.replay import require_files
    from monitor.service.app import build_service
    from monitor.service.checks import detector_states

    settings = load_settings(args.config)
    settings.logging.level = log_level(args, settings.logging.level)
    configure_logging(settings.logging.level, settings.logging.format, secrets=secret_values(settings))
    require_files(settings)
    states = detector_states(settings, registry=settings.accounts.registry)
    say_detectors(structlog.get_logger("monitor.run"), states, "starting")
    service = build_service(settings)
    tune_garbage_collector()
    code = await service.run()
    say_detectors(structlog.get_logger("monitor.run"), states, "stopped")
    return code


def say_detectors(log, states, when: str) -> None:
    """One line with the detectors on, one warning per detector off and why (at start and stop)."""
    log.info(f"detectors on ({when})", on=[s.detector for s in states if s.on])
    for state in states:
        if not state.on:
            log.warning(f"detector {state.detector} off: {state.why}", detector=state.detector, when=when)
