"""`portal-monitor alerts list|show|ack|resolve`: the incident responder's view of alerts."""

from __future__ import annotations

import argparse
import sys

from monitor.response import queries as responder
from monitor.contract.alerts import SEVERITIES
from monitor.commands._shared import (
    actor, add_actor_argument, add_common_arguments, detector_name, print_fields, print_json, print_rows, run_with_store,
)

LIST_COLUMNS = ("alert_id", "ts", "detector", "severity", "account_id", "source", "status", "repeat_count", "summary")
DETAIL_FIELDS = (
    "alert_id", "ts", "detected_at", "detector", "severity", "account_id", "source", "portal", "session_ids", "status",
    "verdict", "repeat_count", "last_seen", "silence_id", "acknowledged_at", "acknowledged_by", "resolved_at",
    "resolved_by", "summary", "policy",
)


def register(subcommands: argparse._SubParsersAction) -> None:
    parser = subcommands.add_parser(
        "alerts",
        help="list, show, acknowledge and resolve alerts (from the store)",
        description="Query and work alerts in PostgreSQL ([postgres] settings from --config and "
        "PORTAL_MONITOR_POSTGRES__*). An alert id may be shortened to a unique prefix of 6+ characters.",
    )
    commands = parser.add_subparsers(dest="alerts_command", metavar="ACTION", required=True)

    listing = commands.add_parser("list", help="alerts, newest first")
    add_common_arguments(listing)
    listing.add_argument("--since", help="RFC 3339 time, date, or age such as 24h or 7d")
    listing.add_argument("--until", help="RFC 3339 time or date (exclusive)")
    listing.add_argument("--detector", type=detector_name, help="only this detector (its id, e.g. impossible_travel)")
    listing.add_argument("--severity", choices=SEVERITIES, help="only this severity")
    listing.add_argument("--account", help="only this account id")
    listing.add_argument(
        "--source", help="only alerts about a source (password_spray) within or containing this address or CIDR network"
    )
    listing.add_argument("--status", choices=responder.STATUSES, help="only alerts in this state")
    listing.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    listing.set_defaults(func=list_alerts)

    show = commands.add_parser("show", help="one alert: evidence, policy, actions, repeats, deliveries")
    add_common_arguments(show)
    show.add_argument("alert_id", metavar="ID")
    show.set_defaults(func=show_alert)

    ack = commands.add_parser("ack", help="acknowledge an open alert")
    add_common_arguments(ack)
    add_actor_argument(ack)
    ack.add_argument("alert_id", metavar="ID")
    ack.add_argument("--note", default="", help="what you are doing about it")
    ack.set_defaults(func=ack_alert)

    resolve = commands.add_parser("resolve", help="resolve an alert with a verdict")
    add_common_arguments(resolve)
    add_actor_argument(resolve)
    resolve.add_argument("alert_id", metavar="ID")
    resolve.add_argument("--verdict", required=True, choices=responder.VERDICTS, help="was it real?")
    resolve.add_argument("--note", default="", help="what was found")
    resolve.set_defaults(func=resolve_alert)



async def list_alerts(args: argparse.Namespace) -> int:
    async def action(pool) -> int:
        rows = await responder.list_alerts(
            pool,
            since=responder.parse_time(args.since),
            until=responder.parse_time(args.until),
            detector=args.detector,
            severity=args.severity,
            account=args.account,
            source=args.source,
            status=args.status,
            limit=responder.check_limit(args.limit, maximum=100_000),
        )
        print_rows(rows, LIST_COLUMNS, args.output)
        return 0

    return await run_with_store(args, action)


def print_alert(alert: dict, fmt: str) -> None:
    if fmt == "json":
        print_json(alert)
        return
    if fmt == "csv":
        print_rows([alert], DETAIL_FIELDS, "csv")
        return
    print_fields(alert, DETAIL_FIELDS)
    print("evidence:")
    print_json(alert["evidence"])
    for title, rows, columns in (
        ("actions", alert["actions"], ("at", "actor", "action", "verdict", "note")),
        ("repeats", alert["repeats"], ("repeat_id", "ts", "severity", "session_ids")),
        ("deliveries", alert["deliveries"], ("sink", "attempts", "created_at", "delivered_at", "last_error")),
    ):
        if rows:
            print(f"\n{title}:")
            print_rows(rows, columns, "table")


async def show_alert(args: argparse.Namespace) -> int:
    async def action(pool) -> int:
        print_alert(await responder.get_alert(pool, args.alert_id), args.output)
        return 0

    return await run_with_store(args, action)


async def ack_alert(args: argparse.Namespace) -> int:
    async def action(pool) -> int:
        alert = await responder.acknowledge(pool, args.alert_id, actor(args), args.note)
        if args.output == "table":
            print(f"acknowledged {alert['alert_id']} ({alert['detector']}, {alert['account_id']})", file=sys.stdout)
        else:
            print_alert(alert, args.output)
        return 0

    return await run_with_store(args, action)


async def resolve_alert(args: argparse.Namespace) -> int:
    async def action(pool) -> int:
        alert = await responder.resolve(pool, args.alert_id, actor(args), args.verdict, args.note)
        if args.output == "table":
            print(f"resolved {alert['alert_id']} as {alert['verdict']}")
        else:
            print_alert(alert, args.output)
        return 0

    return await run_with_store(args, action)
