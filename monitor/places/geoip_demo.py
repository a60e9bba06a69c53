"""Demo GeoIP databases: City, ASN and Anonymous-IP `.mmdb` files written from a table of networks.

The demo and the tests need no download: they describe a small synthetic world as records

    (cidr, country, city, lat, lon, radius_km, asn, org, kind)

and `write_databases(records, directory)` turns them into MaxMind-format files with
`mmdb-writer`, read back by the same `maxminddb` reader the service uses on real GeoLite2 files.
A record may be a tuple in that order, a dict with those keys, or any object with those
attributes (so the synthetic world table of the demo generator can be passed as it is).

`kind` says what sort of network it is. `vpn`, `tor`, `proxy`, `residential_proxy` and
`hosting` also get an entry in the Anonymous-IP database, as GeoIP2 Anonymous IP would have;
anything else (`residential`, `mobile`, `school`, `council`, `public`, `business`) does not.

    python -m monitor.places.geoip_demo DIR          # writes the built-in sample world
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Iterable, NamedTuple

FIELDS = ("cidr", "country", "city", "lat", "lon", "radius_km", "asn", "org", "kind")

# kind -> Anonymous-IP flags set for it.
ANONYMOUS_KINDS: dict[str, tuple[str, ...]] = {
    "vpn": ("is_anonymous", "is_anonymous_vpn"),
    "tor": ("is_anonymous", "is_tor_exit_node"),
    "proxy": ("is_anonymous", "is_public_proxy"),
    "residential_proxy": ("is_anonymous", "is_residential_proxy"),
    "hosting": ("is_anonymous", "is_hosting_provider"),
    # the kinds of the demo's synthetic world (monitor.demo.world)
    "tor_exit": ("is_anonymous", "is_tor_exit_node"),
    "hosting_vpn": ("is_anonymous", "is_anonymous_vpn", "is_hosting_provider"),
}

# Other spellings of the record's fields: monitor.demo.world.Network's names.
ALIASES = {"lat": "latitude", "lon": "longitude", "radius_km": "accuracy_radius_km", "org": "organisation"}

FILE_NAMES = {
    "city_db": "demo-City.mmdb",
    "asn_db": "demo-ASN.mmdb",
    "anonymous_db": "demo-Anonymous-IP.mmdb",
}


class NetworkRecord(NamedTuple):
    cidr: str
    country: str | None
    city: str | None
    lat: float | None
    lon: float | None
    radius_km: int | None
    asn: int | None
    org: str | None
    kind: str = "residential"


# A small sample world around Preston, Lancashire, for the demo when no other table is given.
SAMPLE_NETWORKS: tuple[NetworkRecord, ...] = (
    NetworkRecord("81.2.69.0/24", "GB", "Preston", 53.7632, -2.7031, 5, 2856, "British Telecommunications PLC", "residential"),
    NetworkRecord("86.150.0.0/16", "GB", "Blackburn", 53.7486, -2.4875, 10, 2856, "British Telecommunications PLC", "residential"),
    NetworkRecord("82.32.0.0/14", "GB", "Lancaster", 54.0466, -2.8007, 10, 5089, "Virgin Media Limited", "residential"),
    NetworkRecord("2a02:c7f::/32", "GB", "Preston", 53.7632, -2.7031, 20, 5607, "Sky UK Limited", "residential"),
    NetworkRecord("31.94.0.0/16", "GB", None, 51.4964, -0.1224, 1000, 12576, "EE Limited", "mobile"),
    NetworkRecord("194.72.0.0/16", "GB", "Preston", 53.7632, -2.7031, 20, 786, "Jisc Services Limited", "school"),
    NetworkRecord("212.219.0.0/16", "GB", "Preston", 53.7590, -2.6990, 10, 786, "Jisc Services Limited", "council"),
    NetworkRecord("62.172.10.0/24", "GB", "Preston", 53.7601, -2.7010, 5, 2856, "Net Cafe Fishergate", "public"),
    NetworkRecord("178.62.0.0/16", "GB", "London", 51.5085, -0.1257, 50, 14061, "DigitalOcean, LLC", "hosting"),
    NetworkRecord("89.238.128.0/18", "NL", "Amsterdam", 52.3740, 4.8897, 20, 9009, "M247 Europe SRL", "vpn"),
    NetworkRecord("185.220.101.0/24", "DE", "Berlin", 52.5244, 13.4105, 100, 208294, "Relayon Foundation", "tor"),
    NetworkRecord("83.44.0.0/16", "ES", "Malaga", 36.7202, -4.4203, 20, 3352, "Telefonica de Espana S.A.U.", "residential"),
    NetworkRecord("90.0.0.0/13", "FR", "Paris", 48.8534, 2.3488, 20, 3215, "Orange S.A.", "residential"),
    NetworkRecord("102.89.0.0/16", "NG", "Lagos", 6.4541, 3.3947, 50, 29465, "MTN Nigeria Communication limited", "mobile"),
    NetworkRecord("2c0f:f5c0::/32", "NG", "Lagos", 6.4541, 3.3947, 100, 29465, "MTN Nigeria Communication limited", "mobile"),
)


def as_record(item: Any) -> NetworkRecord:
    """A record from a tuple, a dict or an object with the record's attributes.

    `latitude`, `longitude`, `accuracy_radius_km` and `organisation` are accepted for `lat`,
    `lon`, `radius_km` and `org`, so `monitor.demo.world.NETWORKS` can be passed as it is.
    """
    if isinstance(item, NetworkRecord):
        return item
    if isinstance(item, (tuple, list)):
        return NetworkRecord(*item)
    if isinstance(item, dict):
        get = item.get
        has = item.__contains__
    else:
        get = lambda name: getattr(item, name, None)  # noqa: E731
        has = lambda name: hasattr(item, name)  # noqa: E731
    fields = {}
    for name in FIELDS:
        alias = ALIASES.get(name)
        if has(name):
            fields[name] = get(name)
        elif alias and has(alias):
            fields[name] = get(alias)
    return NetworkRecord(**fields)


def write_databases(records: Iterable[Any], directory: str | Path) -> dict[str, str]:
    """Write City, ASN and (when any record is anonymous) Anonymous-IP databases into `directory`.

    Returns the paths by settings key: {"city_db": ..., "asn_db": ..., "anonymous_db": ...}.
    IPv4 and IPv6 networks go into one IPv6 database each, IPv4 mapped as GeoLite2 does.
    """
    from mmdb_writer import MMDBWriter, MmdbF64, MmdbU16, MmdbU32
    from netaddr import IPSet

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    city = MMDBWriter(6, "PortalMonitorDemo-City", languages=["en"], description="portal-monitor demo City", ipv4_compatible=True)
    asn = MMDBWriter(6, "PortalMonitorDemo-ASN", languages=["en"], description="portal-monitor demo ASN", ipv4_compatible=True)
    anonymous = MMDBWriter(6, "PortalMonitorDemo-Anonymous-IP", languages=["en"], description="portal-monitor demo Anonymous IP", ipv4_compatible=True)
    any_anonymous = False
    # Wider networks first, so a narrower one inside them overrides them.
    ordered = sorted((as_record(item) for item in records), key=lambda r: _prefixlen(r.cidr))
    for record in ordered:
        network = IPSet([record.cidr])
        place: dict[str, Any] = {}
        if record.country:
            place["country"] = {"iso_code": record.country}
            place["registered_country"] = {"iso_code": record.country}
        if record.city:
            place["city"] = {"names": {"en": record.city}}
        if record.lat is not None and record.lon is not None:
            location: dict[str, Any] = {"latitude": MmdbF64(float(record.lat)), "longitude": MmdbF64(float(record.lon))}
            if record.radius_km is not None:
                location["accuracy_radius"] = MmdbU16(int(record.radius_km))
            place["location"] = location
        if place:
            city.insert_network(network, place)
        if record.asn is not None:
            entry: dict[str, Any] = {"autonomous_system_number": MmdbU32(int(record.asn))}
            if record.org:
                entry["autonomous_system_organization"] = record.org
            asn.insert_network(network, entry)
        flags = ANONYMOUS_KINDS.get(record.kind or "")
        if flags:
            anonymous.insert_network(network, {flag: True for flag in flags})
            any_anonymous = True
    paths = {"city_db": str(folder / FILE_NAMES["city_db"]), "asn_db": str(folder / FILE_NAMES["asn_db"])}
    city.to_db_file(paths["city_db"])
    asn.to_db_file(paths["asn_db"])
    if any_anonymous:
        paths["anonymous_db"] = str(folder / FILE_NAMES["anonymous_db"])
        anonymous.to_db_file(paths["anonymous_db"])
    return paths


def _prefixlen(cidr: str) -> int:
    import ipaddress

    network = ipaddress.ip_network(cidr, strict=False)
    # IPv4 prefixes sort as their IPv6-mapped length so v4 and v6 order consistently.
    return network.prefixlen + (96 if network.version == 4 else 0)


def config_snippet(paths: dict[str, str]) -> str:
    lines = ["[geoip]"] + [f"{key} = {json.dumps(path)}" for key, path in paths.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m monitor.places.geoip_demo",
        description="Write demo City/ASN/Anonymous-IP .mmdb files from a table of networks.",
    )
    parser.add_argument("directory", help="where to write the .mmdb files")
    parser.add_argument(
        "--records",
        metavar="FILE.json",
        help="a JSON list of records (objects with cidr, country, city, lat, lon, radius_km, asn, org, kind); "
        "default: the built-in sample world",
    )
    args = parser.parse_args(argv)
    records: Iterable[Any] = SAMPLE_NETWORKS
    if args.records:
        records = json.loads(Path(args.records).read_text())
    paths = write_databases(records, args.directory)
    print(config_snippet(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
