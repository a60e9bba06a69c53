"""GeoIP enrichment: where an IP address is, from MaxMind-format (`.mmdb`) databases.

Three databases, all optional in the sense that a missing one never stops the service:

- `city_db`: GeoLite2-City or GeoIP2-City (country, city, latitude/longitude and the accuracy
  radius in km). Without it the location detectors (`impossible_travel`, `new_country`) are
  disabled, with one warning.
- `asn_db`: GeoLite2-ASN (or GeoIP2-ISP): autonomous system number and organisation.
- `anonymous_db`: GeoIP2-Anonymous-IP: VPN, Tor exit, public/residential proxy and hosting
  provider flags, used by `risky_network`.

Lookups go through a bounded per-process cache keyed by the address as written in the event:
only logins and page views that change their session's IP are looked up, and most of those
repeat an address seen shortly before. Equal answers are one shared `Location` instance
(interned, bounded like the cache): every live session holds its location, and a million
sessions come from a few thousand places, not a million. `reload()` reopens the files
(geoipupdate replaces them in place) and swaps readers and cache in one assignment.
"""

from __future__ import annotations

import ipaddress
import sys
from typing import Any, NamedTuple

import maxminddb
import msgspec

# Accepted `database_type` metadata (substring match) per configured database.
EXPECTED_TYPES: dict[str, tuple[str, ...]] = {
    "city_db": ("City", "Country"),
    "asn_db": ("ASN", "ISP"),
    "anonymous_db": ("Anonymous",),
}

# GeoIP2 Anonymous IP flags, in the order a match is reported (most specific first).
ANONYMOUS_FLAGS: tuple[str, ...] = (
    "is_tor_exit_node",
    "is_anonymous_vpn",
    "is_public_proxy",
    "is_residential_proxy",
    "is_hosting_provider",
)

_MISSING = object()


class Location(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """What the databases say about one IP address. Fields a database lacks are None."""

    country: str | None = None  # ISO 3166-1 alpha-2, e.g. "GB"
    city: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    radius_km: float | None = None  # MaxMind's accuracy radius: the true place is within it
    asn: int | None = None
    org: str | None = None
    anonymous: tuple[str, ...] = ()  # Anonymous IP flags that are set, e.g. ("is_anonymous_vpn",)

    @property
    def has_coordinates(self) -> bool:
        return self.latitude is not None and self.longitude is not None

    def place(self) -> str:
        """"Preston, GB", "GB", or "an unknown place": for alert sentences."""
        if self.city and self.country:
            return f"{self.city}, {self.country}"
        return self.country or self.city or "an unknown place"

    def network_name(self) -> str:
        """"AS2856 British Telecommunications PLC", or "" when the ASN is not known."""
        if self.asn is None:
            return ""
        return f"AS{self.asn} {self.org}" if self.org else f"AS{self.asn}"


class OpenProblem(NamedTuple):
    """A database that is configured but could not be used, and why."""

    key: str  # "city_db", "asn_db" or "anonymous_db"
    path: str
    error: str


class _Readers(NamedTuple):
    city: Any
    asn: Any
    anonymous: Any
    cache: dict[str, Location | None]  # by address as written in events
    blocks: dict[str, Location | None]  # by IPv4 /24 ("31.94.12") where every database's network covers it
    places: dict[Location, Location]  # one instance per distinct answer, shared by every session placed there


def open_reader(key: str, path: str) -> tuple[Any, OpenProblem | None]:
    """Open one database; (reader, None) or (None, the problem). Never raises."""
    if not path:
        return None, None
    try:
        reader = maxminddb.open_database(path, maxminddb.MODE_AUTO)
    except FileNotFoundError:
        return None, OpenProblem(key, path, "file not found")
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as error:
        return None, OpenProblem(key, path, f"not a readable MaxMind database: {error}")
    database_type = str(getattr(reader.metadata(), "database_type", ""))
    if not any(expected in database_type for expected in EXPECTED_TYPES[key]):
        reader.close()
        wanted = " or ".join(EXPECTED_TYPES[key])
        return None, OpenProblem(key, path, f"database type is {database_type!r}, expected a {wanted} database")
    return reader, None


class GeoIP:
    """Looks up IP addresses in the configured databases, with a bounded cache."""

    def __init__(self, city_db: str = "", asn_db: str = "", anonymous_db: str = "", cache_size: int = 65_536) -> None:
        self.paths = {"city_db": city_db, "asn_db": asn_db, "anonymous_db": anonymous_db}
        self.cache_size = cache_size
        self._state = _Readers(None, None, None, {}, {}, {})
        self.problems: list[OpenProblem] = []

    @classmethod
    def open(cls, city_db: str = "", asn_db: str = "", anonymous_db: str = "", cache_size: int = 65_536) -> "GeoIP":
        geoip = cls(city_db, asn_db, anonymous_db, cache_size)
        geoip.problems = geoip._load(keep=None)
        return geoip

    @property
    def has_city(self) -> bool:
        return self._state.city is not None

    @property
    def has_asn(self) -> bool:
        return self._state.asn is not None

    @property
    def has_anonymous(self) -> bool:
        return self._state.anonymous is not None

    def reload(self) -> list[OpenProblem]:
        """Reopen every database; a file that fails keeps its previous reader. Swaps atomically."""
        self.problems = self._load(keep=self._state)
        return self.problems

    def _load(self, keep: _Readers | None) -> list[OpenProblem]:
        problems: list[OpenProblem] = []
        readers = []
        for index, key in enumerate(("city_db", "asn_db", "anonymous_db")):
            reader, problem = open_reader(key, self.paths[key])
            if problem is not None:
                problems.append(problem)
                if keep is not None:
                    reader = keep[index]
            readers.append(reader)
        self._state = _Readers(readers[0], readers[1], readers[2], {}, {}, {})
        return problems

    def loaded(self) -> dict[str, str]:
        """Which databases are in use: key -> database type and build date, for logs."""
        described = {}
        for key, reader in zip(("city_db", "asn_db", "anonymous_db"), self._state[:3]):
            if reader is not None:
                meta = reader.metadata()
                described[key] = f"{meta.database_type} built {meta.build_epoch}"
        return described

    def lookup(self, ip: str) -> Location | None:
        """Where `ip` is; None when no database knows the address. Cached."""
        state = self._state
        cache = state.cache
        location = cache.get(ip, _MISSING)
        if location is not _MISSING:
            return location  # type: ignore[return-value]
        if len(cache) >= self.cache_size:
            cache.clear()
            state.blocks.clear()
            if len(state.places) >= self.cache_size:
                state.places.clear()
        block = ip[: ip.rfind(".")] if ":" not in ip else None
        if block is not None:
            # Most databases store IPv4 networks of /24 or wider: another address of a /24
            # whose networks all cover it (an ISP's or a carrier's pool) needs no lookup.
            location = state.blocks.get(block, _MISSING)
            if location is not _MISSING:
                cache[ip] = location  # type: ignore[assignment]
                return location  # type: ignore[return-value]
        location, prefix = _resolve(state, ip)
        if location is not None:
            location = state.places.setdefault(location, location)
        if block is not None and prefix <= 24:
            state.blocks[block] = location
        cache[ip] = location
        return location


def _get(reader: Any, address: str) -> tuple[dict | None, int]:
    """The record for `address` and the prefix length of the network it holds (0: no reader)."""
    if reader is None:
        return None, 0
    try:
        record, prefix = reader.get_with_prefix_len(address)
    except ValueError:  # an IPv6 address in an IPv4-only database, or not an address
        return None, 128
    return (record if isinstance(record, dict) else None), prefix


def _resolve(state: _Readers, ip: str) -> tuple[Location | None, int]:
    """Where `ip` is, and the longest prefix among the databases' networks holding it."""
    address = ip
    if ":" in ip:
        try:
            parsed = ipaddress.ip_address(ip)
        except ValueError:
            return None, 128
        mapped = getattr(parsed, "ipv4_mapped", None)
        if mapped is not None:
            address = str(mapped)
    city, city_prefix = _get(state.city, address)
    asn, asn_prefix = _get(state.asn, address)
    anonymous, anonymous_prefix = _get(state.anonymous, address)
    prefix = max(city_prefix, asn_prefix, anonymous_prefix)
    if city is None and asn is None and anonymous is None:
        return None, prefix
    fields: dict[str, Any] = {}
    if city is not None:
        country = (city.get("country") or city.get("registered_country") or {}).get("iso_code")
        if country:
            fields["country"] = sys.intern(str(country))
        name = ((city.get("city") or {}).get("names") or {}).get("en")
        if name:
            fields["city"] = sys.intern(str(name))
        where = city.get("location") or {}
        if where.get("latitude") is not None and where.get("longitude") is not None:
            fields["latitude"] = float(where["latitude"])
            fields["longitude"] = float(where["longitude"])
        if where.get("accuracy_radius") is not None:
            fields["radius_km"] = float(where["accuracy_radius"])
    if asn is not None:
        if asn.get("autonomous_system_number") is not None:
            fields["asn"] = int(asn["autonomous_system_number"])
        org = asn.get("autonomous_system_organization") or asn.get("organization")
        if org:
            fields["org"] = sys.intern(str(org))
    if anonymous is not None:
        flags = tuple(flag for flag in ANONYMOUS_FLAGS if anonymous.get(flag))
        if flags:
            fields["anonymous"] = flags
    return Location(**fields), prefix


def describe_problems(problems: list[OpenProblem]) -> str:
    return "; ".join(f"{p.key} {p.path}: {p.error}" for p in problems)

