"""`portal-monitor geoip`: look addresses up as the detectors see them; write demo databases."""

from __future__ import annotations

import argparse
import json

import msgspec

from monitor.service.config import load_settings


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
    from monitor.places.geo import GeoServices

    geo = GeoServices.from_settings(load_settings(args.config))
    for ip in args.ips:
        location = geo.lookup(ip)
        match = geo.risky.match(ip, location)
        print(
            json.dumps(
                {
                    "ip": ip,
                    "location": msgspec.to_builtins(location) if location is not None else None,
                    "risky": match._asdict() if match is not None else None,
                }
            )
        )
    return 0


def write_demo(args: argparse.Namespace) -> int:
    from monitor.places.geoip_demo import main

    argv = [args.directory] + (["--records", args.records] if args.records else [])
    return main(argv)

