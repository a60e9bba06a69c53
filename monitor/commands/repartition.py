"""`portal-monitor repartition`: re-key a raw topic by account_id into the detectors' topic."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from monitor.service.config import load_settings, secret_values
from monitor.support.logging import configure_logging


def register(subcommands: argparse._SubParsersAction) -> None:
    from monitor.commands.cli import add_config_argument

    parser = subcommands.add_parser(
        "repartition",
        help="re-key a raw event topic by account_id into the topic the detectors read",
        description="For producers that do not key records by account_id: read RAW_TOPIC in its own "
        "consumer group and produce each record unchanged to [source] topic (default portal.events) "
        "keyed by its account_id, so an account's events all reach one shard. Raw offsets are "
        "committed only after the broker acknowledged the produces; records without a usable "
        "account_id go to [source] dead_letter_topic. Runs until SIGTERM, or with --until-caught-up "
        "stops at the end of the raw topic (a backfill).",
    )
    parser.add_argument("raw_topic", metavar="RAW_TOPIC", help="the topic the portal writes to")
    add_config_argument(parser)
    parser.add_argument("--group-id", default="portal-monitor-repartition", help="consumer group for the raw topic")
    parser.add_argument("--until-caught-up", action="store_true", help="stop once the raw topic is fully relayed")
    parser.set_defaults(func=repartition)


async def repartition(args: argparse.Namespace) -> int:
    from monitor.ingest.repartition import Repartitioner

    from monitor.commands._shared import log_level
    from monitor.ingest.kafka_client import KafkaUnreachable

    settings = load_settings(args.config)
    configure_logging(log_level(args, settings.logging.level), settings.logging.format, secrets=secret_values(settings))
    relay = Repartitioner(settings.kafka, settings.source, args.raw_topic, args.group_id, settings.source.batch_max_records)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, relay.stop_requested.set)
    try:
        stats = await relay.run(until_caught_up=args.until_caught_up)
    except KafkaUnreachable as error:
        print(f"portal-monitor: repartition: {error}", file=sys.stderr)
        return 1
    print(
        f"repartition: relayed {stats.relayed:,} records to {settings.source.topic}, "
        f"{stats.dead_letters:,} to {settings.source.dead_letter_topic}",
        file=sys.stderr,
    )
    return 0
