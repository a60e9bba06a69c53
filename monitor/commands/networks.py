"""`portal-monitor networks list`: the networks learnt as organisation-shared.

A portal team wants to see which addresses the monitor treats as shared (never new, never
far), how many accounts use them, since when, and where GeoIP puts them, to confirm them or
pin them in `networks.allowlist`. Two sources:

- the organisation's view in PostgreSQL (`shared_networks`, merged by every running process),
  the default;
- `--from-events FILE.jsonl` (or `-` for stdin): replay portal events through one shard with
  the configured GeoIP and lists and show what it learns; no database needed.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from typing import Any

import msgspec

from monitor.commands._shared import add_output_argument, print_rows
from monitor.service.config import load_settings
from monitor.places.shared_networks import NetworkEntry

REPLAY_BATCH = 5000


def register(subcommands: argparse._SubParsersAction) -> None:
    from monitor.commands.cli import add_config_argument

    parser = subcommands.add_parser(
        "networks",
        help="networks learnt as organisation-shared (school NATs, council offices)",
        description="Inspect the networks the monitor learnt as shared by many accounts.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list",
        help="list learnt shared networks with accounts, first/last seen and GeoIP place",
        description="List the networks learnt as shared: from PostgreSQL (the organisation's view, "
        "default) or from replaying an events file with --from-events (no database needed).",
    )
    add_config_argument(listing)
    listing.add_argument(
        "--from-events",
        metavar="FILE",
        help="replay portal.event/v1 JSONL (or - for stdin) instead of reading PostgreSQL",
    )
    listing.add_argument(
        "--all",
        action="store_true",
        help="also list networks still being learnt (at least 2 accounts, below the threshold)",
    )
    add_output_argument(listing)
    listing.add_argument("--json", dest="output", action="store_const", const="json", help=argparse.SUPPRESS)
    listing.add_argument("--no-progress", action="store_true", help="no progress line even on a terminal")
    listing.set_defaults(func=list_networks)


def list_networks(args: argparse.Namespace) -> Any:
    from monitor.commands._shared import log_level
    from monitor.support.logging import configure_logging

    settings = load_settings(args.config)
    configure_logging(log_level(args, "warning"), settings.logging.format)  # stdout is for the listing
    if args.from_events:
        try:
            return _print(args, settings, *_replay(settings, args.from_events, not args.no_progress))
        except OSError as error:
            print(f"portal-monitor: cannot read {args.from_events}: {error.strerror or error}", file=sys.stderr)
            return 1
    return _from_database(args, settings)


def _replay(settings: Any, path: str, show_progress: bool = True) -> tuple[list[NetworkEntry], Any]:
    from monitor.commands._progress import Progress
    from monitor.ingest.sources.files import JsonlEventFile
    from monitor.places.geo import GeoServices
    from monitor.service.shards import build_shard

    geo = GeoServices.from_settings(settings)
    shard = build_shard(settings, partition=0, geo=geo)
    source = JsonlEventFile(path, batch_lines=REPLAY_BATCH)
    progress = Progress(f"networks list --from-events {path}", "events", enabled=show_progress)
    events = 0
    for batch in source.batches():
        shard.process(batch)
        events += len(batch)
        progress.update(events, share=source.bytes_read / source.size if source.size else None)
    shard.drain()
    progress.finish(events)
    return geo.shared.entries(min_accounts=2), geo


async def _from_database(args: argparse.Namespace, settings: Any) -> int:
    import asyncpg

    from monitor import store
    from monitor.commands._shared import fail, store_problem
    from monitor.places import shared_networks
    from monitor.places.geo import GeoServices

    settings.postgres.pool_min, settings.postgres.pool_max = 1, 1
    try:
        pool = await store.connect(settings.postgres)  # never migrates: a read-only role will do
    except store.StoreUnreachable as error:
        return fail(f"{error}; use --from-events FILE.jsonl to learn from a replay instead")
    except asyncpg.PostgresError as error:
        return fail(f"store refused the connection: {type(error).__name__}: {error}")
    try:
        async with pool.acquire() as conn:
            entries = await shared_networks.list_networks(
                conn, 2, settings.networks.shared.min_accounts, float(settings.networks.shared.min_span)
            )
    except asyncpg.PostgresError as error:
        return fail(store_problem(error) or f"store error: {type(error).__name__}: {error}")
    finally:
        await pool.close()
    return _print(args, settings, entries, GeoServices.from_settings(settings))


def _print(args: argparse.Namespace, settings: Any, entries: list[NetworkEntry], geo: Any) -> int:
    if not args.all:
        entries = [entry for entry in entries if entry.shared]
    for entry in entries:
        location = geo.lookup(str(ipaddress.ip_network(entry.network).network_address))
        if location is not None:
            entry.country = location.country
            entry.place = location.place()
            entry.org = location.network_name() or None
    shared = settings.networks.shared
    rule = (
        f"shared = at least {shared.min_accounts} accounts over at least {_days(shared.min_span)}; "
        "pin one with networks.allowlist"
    )
    rows = []
    for entry in entries:
        row = msgspec.to_builtins(entry)
        row["first_seen"], row["last_seen"] = entry.first_seen, entry.last_seen
        row["where"] = ", ".join(part for part in (entry.place, entry.org) if part) or None
        rows.append(row)
    if args.output != "table":
        print_rows(rows, ("network", "accounts", "shared", "first_seen", "last_seen", "country", "place", "org"), args.output)
        return 0
    if not entries:
        print(f"no shared networks learnt ({rule})")
        return 0
    print_rows(rows, ("network", "accounts", "shared", "first_seen", "last_seen", "where"), "table")
    print(f"({rule})")
    return 0


def _days(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:g} d"
    return f"{seconds / 3600:g} h"

