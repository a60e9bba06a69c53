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
    listing.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    listing.set_defaults(func=list_networks)


def list_networks(args: argparse.Namespace) -> Any:
    settings = load_settings(args.config)
    if args.from_events:
        return _print(args, settings, *_replay(settings, args.from_events))
    return _from_database(args, settings)


def _replay(settings: Any, path: str) -> tuple[list[NetworkEntry], Any]:
    from monitor.places.geo import GeoServices
    from monitor.service.shards import build_shard

    geo = GeoServices.from_settings(settings)
    shard = build_shard(settings, partition=0, geo=geo)
    stream = sys.stdin.buffer if path == "-" else open(path, "rb")
    try:
        batch: list[tuple[int, bytes]] = []
        for offset, line in enumerate(stream):
            if line.strip():
                batch.append((offset, line))
            if len(batch) >= REPLAY_BATCH:
                shard.process(batch)
                batch = []
        shard.process(batch)
        shard.drain()
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    return geo.shared.entries(min_accounts=2), geo


async def _from_database(args: argparse.Namespace, settings: Any) -> int:
    import asyncpg

    from monitor.places import shared_networks
    from monitor.places.geo import GeoServices

    config = settings.postgres
    try:
        conn = await asyncpg.connect(
            config.dsn, password=config.password or None, timeout=float(config.connect_timeout)
        )
    except (OSError, asyncpg.PostgresError) as error:
        print(
            f"portal-monitor: cannot reach PostgreSQL ({error}); "
            "use --from-events FILE.jsonl to learn from a replay instead",
            file=sys.stderr,
        )
        return 1
    try:
        entries = await shared_networks.list_networks(
            conn, 2, settings.networks.shared.min_accounts, float(settings.networks.shared.min_span)
        )
    except asyncpg.UndefinedTableError:
        entries = []
    finally:
        await conn.close()
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
    if args.json:
        for entry in entries:
            print(json.dumps(msgspec.to_builtins(entry)))
        return 0
    rule = (
        f"shared = at least {shared.min_accounts} accounts over at least {_days(shared.min_span)}; "
        "pin one with networks.allowlist"
    )
    if not entries:
        print(f"no shared networks learnt ({rule})")
        return 0
    print(f"{'NETWORK':<28} {'ACCOUNTS':>8}  {'SHARED':<6}  {'FIRST SEEN':<17}  {'LAST SEEN':<17}  WHERE (GEOIP)")
    for entry in entries:
        where = ", ".join(part for part in (entry.place, entry.org) if part) or "-"
        print(
            f"{entry.network:<28} {entry.accounts:>8}  {'yes' if entry.shared else 'no':<6}  "
            f"{entry.first_seen:%Y-%m-%d %H:%MZ}  {entry.last_seen:%Y-%m-%d %H:%MZ}  {where}"
        )
    print(f"({rule})")
    return 0


def _days(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:g} d"
    return f"{seconds / 3600:g} h"

