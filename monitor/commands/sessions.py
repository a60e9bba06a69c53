"""`portal-monitor sessions list|show`: flagged sessions and the timeline of what was viewed."""

from __future__ import annotations

import argparse

from monitor.response import queries as responder
from monitor.commands._shared import add_common_arguments, print_fields, print_json, print_rows, run_with_store

LIST_COLUMNS = ("session_id", "account_id", "portal", "opened_at", "closed_at", "close_reason", "ip", "page_views", "alert_ids")
DETAIL_FIELDS = (
    "session_id", "account_id", "portal", "opened_at", "last_activity", "closed_at", "close_reason", "ip",
    "last_ip", "network", "user_agent", "device_id", "page_views", "alert_ids",
)
TIMELINE_COLUMNS = ("at", "event", "resource", "ip", "detail")


def register(subcommands: argparse._SubParsersAction) -> None:
    parser = subcommands.add_parser(
        "sessions",
        help="flagged sessions and their timelines (from the store)",
        description="Sessions named by an alert, with each item viewed in them. The store keeps "
        "flagged sessions only; [postgres] settings from --config and PORTAL_MONITOR_POSTGRES__*.",
    )
    commands = parser.add_subparsers(dest="sessions_command", metavar="ACTION", required=True)

    listing = commands.add_parser("list", help="flagged sessions, most recent first")
    add_common_arguments(listing)
    listing.add_argument("--flagged", action="store_true", default=True,
                         help="flagged sessions (the default and the only kind stored)")
    listing.add_argument("--since", help="active since: RFC 3339 time, date, or age such as 24h")
    listing.add_argument("--until", help="opened before: RFC 3339 time or date")
    listing.add_argument("--account", help="only this account id")
    listing.add_argument("--alert", help="only sessions flagged by this alert id")
    listing.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    listing.set_defaults(func=list_sessions)

    show = commands.add_parser("show", help="one session and its timeline: login, items viewed, logout or expiry")
    add_common_arguments(show)
    show.add_argument("session_id", metavar="ID", help="a session id, or a unique prefix of 6+ characters")
    show.set_defaults(func=show_session)



async def list_sessions(args: argparse.Namespace) -> int:
    async def action(pool) -> int:
        rows = await responder.list_sessions(
            pool,
            since=responder.parse_time(args.since),
            until=responder.parse_time(args.until),
            account=args.account,
            alert_id=args.alert,
            limit=responder.check_limit(args.limit, maximum=100_000),
        )
        print_rows(rows, LIST_COLUMNS, args.output)
        return 0

    return await run_with_store(args, action)


async def show_session(args: argparse.Namespace) -> int:
    async def action(pool) -> int:
        session = await responder.get_session(pool, args.session_id)
        if args.output == "json":
            print_json(session)
        elif args.output == "csv":
            print_rows(session["timeline"], TIMELINE_COLUMNS, "csv")
        else:
            print_fields(session, DETAIL_FIELDS)
            print("\ntimeline:")
            print_rows(session["timeline"], TIMELINE_COLUMNS, "table")
            if session["alerts"]:
                print("\nalerts:")
                print_rows(session["alerts"], ("alert_id", "ts", "detector", "severity", "status", "summary"), "table")
        return 0

    return await run_with_store(args, action)
