"""`portal-monitor pupils access PUPIL_ID`: who viewed a pupil's record, from the store."""

from __future__ import annotations

import argparse

from monitor.commands._shared import add_common_arguments, print_json, print_rows, run_with_store
from monitor.response import queries as responder

COLUMNS = ("account_id", "views", "downloads", "prints", "exports", "first_at", "last_at", "days", "addresses")


def register(subcommands: argparse._SubParsersAction) -> None:
    parser = subcommands.add_parser(
        "pupils",
        help="who viewed a pupil's record (subject access requests, suspected breaches)",
        description="Answers from PostgreSQL's pupil_access ([pupils] access_log): which accounts viewed, "
        "downloaded, printed or exported a pupil's record, how often, first and last, from which addresses.",
    )
    commands = parser.add_subparsers(dest="pupils_command", metavar="ACTION", required=True)
    access = commands.add_parser("access", help="the accounts that opened PUPIL_ID's record, most recent first")
    add_common_arguments(access)
    access.add_argument("pupil_id", metavar="PUPIL_ID")
    access.add_argument("--since", default="90d", help="from: RFC 3339 time, date, or age such as 90d (default 90d)")
    access.add_argument("--until", help="before: RFC 3339 time or date")
    access.add_argument("--limit", type=int, default=1000, help="at most this many accounts (default 1000)")
    access.set_defaults(func=pupil_access)


async def pupil_access(args: argparse.Namespace) -> int:
    async def action(pool) -> int:
        found = await responder.pupil_access(
            pool,
            args.pupil_id,
            since=responder.parse_time(args.since),
            until=responder.parse_time(args.until),
            limit=responder.check_limit(args.limit, maximum=100_000),
        )
        if args.output == "json":
            print_json(found)
        else:
            print_rows(found["accounts"], COLUMNS, args.output)
        return 0

    return await run_with_store(args, action)
