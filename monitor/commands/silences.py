"""`portal-monitor silences add|list|remove`: mute alerts by account, detector or network.

A silence covers alerts whose event time is in [starts, expires) and that match every field
it names. The daemon picks new silences up within [alerting] silence_refresh (30 s).
"""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta, timezone

from monitor.response import queries as responder
from monitor.commands._shared import (
    actor, add_actor_argument, add_common_arguments, detector_name, print_json, print_rows, rfc3339, run_with_store,
)

COLUMNS = ("silence_id", "account_id", "detector", "network", "starts_at", "expires_at", "created_by", "reason")


def register(subcommands: argparse._SubParsersAction) -> None:
    parser = subcommands.add_parser(
        "silences",
        help="add, list and remove alert silences (by account, detector or network)",
        description="Silenced alerts are stored (status silenced) but not published to any sink.",
    )
    commands = parser.add_subparsers(dest="silences_command", metavar="ACTION", required=True)

    add = commands.add_parser("add", help="add a silence; name at least one of --account, --detector, --network")
    add_common_arguments(add)
    add_actor_argument(add)
    add.add_argument("--account", help="account id")
    add.add_argument("--detector", type=detector_name, help="detector id, e.g. impossible_travel")
    add.add_argument("--network", help="CIDR, e.g. 192.0.2.0/24: alerts with any IP in it")
    add.add_argument("--expires", required=True, help="RFC 3339 time, or a duration from now such as 2h or 7d")
    add.add_argument("--starts", help="RFC 3339 time (default: now)")
    add.add_argument("--reason", default="", help="why (shown in list)")
    add.set_defaults(func=add_silence)

    listing = commands.add_parser("list", help="active silences (--all: expired too)")
    add_common_arguments(listing)
    listing.add_argument("--all", action="store_true", help="include expired silences")
    listing.set_defaults(func=list_silences)

    remove = commands.add_parser("remove", help="remove a silence by id")
    add_common_arguments(remove)
    remove.add_argument("silence_id", metavar="ID", type=int)
    remove.set_defaults(func=remove_silence)


def expiry(text: str, now: datetime) -> datetime:
    """`--expires`: an absolute time, or a duration counted forward from now."""
    return responder.parse_expiry(text, now)  # type: ignore[return-value]



async def add_silence(args: argparse.Namespace) -> int:
    async def action(pool) -> int:
        now = datetime.now(timezone.utc)
        silence = await responder.add_silence(
            pool,
            actor=actor(args),
            expires=expiry(args.expires, now),
            starts=responder.parse_time(args.starts),
            account_id=args.account,
            detector=args.detector,
            network=args.network,
            reason=args.reason,
        )
        if args.output == "table":
            print(f"silence {silence['silence_id']} added, until {rfc3339(silence['expires_at'])}")
        elif args.output == "json":
            print_json(silence)
        else:
            print_rows([silence], COLUMNS, "csv")
        return 0

    return await run_with_store(args, action)


async def list_silences(args: argparse.Namespace) -> int:
    async def action(pool) -> int:
        print_rows(await responder.list_silences(pool, include_expired=args.all), COLUMNS, args.output)
        return 0

    return await run_with_store(args, action)


async def remove_silence(args: argparse.Namespace) -> int:
    async def action(pool) -> int:
        await responder.remove_silence(pool, args.silence_id)
        print(f"silence {args.silence_id} removed")
        return 0

    return await run_with_store(args, action)
