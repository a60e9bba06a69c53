"""`portal-monitor geoip`: look addresses up as the detectors see them; write demo databases."""

from __future__ import annotations

import argparse
import json

import msgspec

from monitor.commands._shared import add_output_argument, fail, print_rows
from monitor.service.config import load_settings

LOOKUP_COLUMNS = ("ip", "country", "place", "network", "radius_km", "risky")


def register(subcommands: argparse._SubParsersAction) -> None:
    from monitor.commands.cli import add_config_argument

    parser = subcommands.add_parser(
        "geoip",
        help="GeoIP lookups as the location detectors see them, and demo databases",
        description="Check what the configured GeoIP databases and risky-network lists say about "
        "addresses, or write demo .mmdb files that need no download.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    lookup = actions.add_parser(
        "lookup",
        help="print place, network and risky-list match of IP addresses",
        description="Print, as JSON lines, where the configured databases place each address, "
        "its ASN and organisation, and the risky-network list it is on.",
    )
    add_config_argument(lookup)
    add_output_argument(lookup)
    lookup.add_argument("ips", nargs="+", metavar="IP")
    lookup.set_defaults(func=lookup_ips)
    demo = actions.add_parser(
        "write-demo",
        help="write demo City/ASN/Anonymous-IP .mmdb files and print the [geoip] settings",
        description="Write .mmdb files for the built-in sample world (or --records FILE.json) into "
        "DIR, and print the [geoip] section that uses them.",
    )
    demo.add_argument("directory", metavar="DIR")
    demo.add_argument("--records", metavar="FILE.json", help="a JSON list of network records")
    demo.set_defaults(func=write_demo)


def lookup_ips(args: argparse.Namespace) -> int:
    import ipaddress

    from monitor.places.geo import GeoServices

    for ip in args.ips:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            return fail(f"not an IP address: {ip!r}", 2)
    from monitor.commands._shared import log_level
    from monitor.support.logging import configure_logging

    settings = load_settings(args.config)
    configure_logging(log_level(args, "warning"), settings.logging.format)  # stdout is for the answers
    geo = GeoServices.from_settings(settings)
    rows = []
    for ip in args.ips:
        location = geo.lookup(ip)
        match = geo.risky.match(ip, location)
        rows.append(
            {
                "ip": ip,
                "location": msgspec.to_builtins(location) if location is not None else None,
                "risky": match._asdict() if match is not None else None,
            }
        )
    if args.output == "json":
        print_rows(rows, (), "json")
        return 0
    flat = [
        {
            "ip": row["ip"],
            "country": location.country if location is not None else None,
            "place": location.place() if location is not None else None,
            "network": (location.network_name() or None) if location is not None else None,
            "radius_km": location.radius_km if location is not None else None,
            "risky": f"{row['risky']['list_name']} ({row['risky']['kind']})" if row["risky"] else None,
        }
        for row, location in ((row, geo.lookup(row["ip"])) for row in rows)
    ]
    print_rows(flat, LOOKUP_COLUMNS, args.output)
    return 0


def write_demo(args: argparse.Namespace) -> int:
    from monitor.places.geoip_demo import main

    argv = [args.directory] + (["--records", args.records] if args.records else [])
    try:
        return main(argv)
    except OSError as error:
        where = error.filename or args.directory
        return fail(f"geoip write-demo: cannot write {where}: {error.strerror or error}")
    except ValueError as error:
        return fail(f"geoip write-demo: {error}", 2)
