"""Risky networks: Tor exits, anonymous VPNs and proxies, hosting providers, public networks.

The Parent Portal policy forbids use "in any environment where the security of the
information ... may be placed at risk e.g. a cybercafé". A login from such a place is known
from two sources:

- lists the portal team keeps (`[[networks.risky]]`): each has a name, a kind and entries
  from a file and/or inline. An entry is an IP address, a CIDR, or an ASN written `AS1234`;
  the Tor Project's exit lists work as they are (one address per line, or `ExitAddress` lines);
- the GeoIP2 Anonymous IP database (`geoip.anonymous_db`), when configured.

`RiskyNetworks.reload()` rereads every list file and swaps the whole set in one assignment,
so a lookup never sees half a reload; a file that cannot be read keeps its previous entries.
The daemon calls it on SIGHUP.
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Any, Iterable, NamedTuple

import structlog

from monitor.places.geoip import Location
from monitor.contract.settings import Section
from typing import Literal

KINDS: tuple[str, ...] = ("tor", "vpn", "proxy", "hosting", "public")

KIND_TEXT: dict[str, str] = {
    "tor": "a Tor exit node",
    "vpn": "an anonymous VPN",
    "proxy": "an anonymising proxy",
    "hosting": "a hosting provider (servers, cloud VPNs and proxies)",
    "public": "a public network",
}

# Kinds whose geolocation is the service's, not the person's: travel and new-country ignore them.
HIDES_LOCATION: frozenset[str] = frozenset({"tor", "vpn", "proxy", "hosting"})

# GeoIP2 Anonymous IP flag -> kind.
ANONYMOUS_KIND: dict[str, str] = {
    "is_tor_exit_node": "tor",
    "is_anonymous_vpn": "vpn",
    "is_public_proxy": "proxy",
    "is_residential_proxy": "proxy",
    "is_hosting_provider": "hosting",
}
ANONYMOUS_LIST = "GeoIP2 Anonymous IP"

_MISSING = object()


class RiskMatch(NamedTuple):
    """Which list an address matched, what kind of network that is, and the entry that matched."""

    list_name: str
    kind: str
    entry: str

    @property
    def hides_location(self) -> bool:
        return self.kind in HIDES_LOCATION


class RiskyList:
    """One named list: exact addresses, CIDR prefixes grouped by length, and ASNs."""

    __slots__ = ("name", "kind", "source", "addresses", "prefixes", "asns", "skipped")

    def __init__(self, name: str, kind: str, source: str) -> None:
        self.name = name
        self.kind = kind
        self.source = source
        self.addresses: set[tuple[int, int]] = set()  # (version, int)
        self.prefixes: dict[tuple[int, int], set[int]] = {}  # (version, prefixlen) -> network ints
        self.asns: set[int] = set()
        self.skipped = 0

    def add(self, text: str) -> None:
        entry = text.split("#", 1)[0].strip()
        if not entry:
            return
        if entry.startswith("ExitAddress "):  # the Tor Project's exit-addresses format
            parts = entry.split()
            entry = parts[1] if len(parts) > 1 else ""
        if entry[:2].upper() == "AS" and entry[2:].isdigit():
            self.asns.add(int(entry[2:]))
            return
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            self.skipped += 1
            return
        if isinstance(network, ipaddress.IPv6Network) and network.network_address.ipv4_mapped is not None and network.prefixlen >= 96:
            network = ipaddress.ip_network(f"{network.network_address.ipv4_mapped}/{network.prefixlen - 96}")
        bits = network.max_prefixlen
        if network.prefixlen == bits:
            self.addresses.add((network.version, int(network.network_address)))
        else:
            self.prefixes.setdefault((network.version, network.prefixlen), set()).add(
                int(network.network_address) >> (bits - network.prefixlen)
            )

    def __len__(self) -> int:
        return len(self.addresses) + sum(len(v) for v in self.prefixes.values()) + len(self.asns)

    def match(self, version: int, value: int, asn: int | None) -> str | None:
        if (version, value) in self.addresses:
            return str(ipaddress.ip_address(value))
        bits = 32 if version == 4 else 128
        for (prefix_version, length), networks in self.prefixes.items():
            if prefix_version == version and (value >> (bits - length)) in networks:
                base = (value >> (bits - length)) << (bits - length)
                return f"{ipaddress.ip_address(base) if version == 4 else ipaddress.IPv6Address(base)}/{length}"
        if asn is not None and asn in self.asns:
            return f"AS{asn}"
        return None


class _Loaded(NamedTuple):
    lists: tuple[RiskyList, ...]
    cache: dict[str, RiskMatch | None]


class RiskyNetworks:
    """The configured risky-network lists plus the Anonymous-IP flags, matched per address.

    `specs` are the `[[networks.risky]]` settings: objects with `name`, `kind`, `file` and
    `entries`. Relative file paths are taken from the working directory.
    """

    def __init__(self, specs: Iterable[Any] = (), use_anonymous_db: bool = True, cache_size: int = 65_536) -> None:
        self.specs = tuple(specs)
        self.use_anonymous_db = use_anonymous_db
        self.cache_size = cache_size
        self._loaded = _Loaded((), {})

    @property
    def lists(self) -> tuple[RiskyList, ...]:
        return self._loaded.lists

    def reload(self) -> dict[str, int]:
        """Reread every list; swap them in at once; log and return entries per list."""
        log = structlog.get_logger()
        previous = {risky.name: risky for risky in self._loaded.lists}
        built: list[RiskyList] = []
        problems: dict[str, str] = {}
        for spec in self.specs:
            risky = RiskyList(spec.name, spec.kind, spec.file or "inline")
            for entry in spec.entries:
                risky.add(entry)
            if spec.file:
                try:
                    with open(Path(spec.file), encoding="utf-8", errors="replace") as lines:
                        for line in lines:
                            risky.add(line)
                except OSError as error:
                    problems[spec.name] = f"{spec.file}: {error.strerror or error}"
                    old = previous.get(spec.name)
                    if old is not None:  # keep what was loaded before rather than forget the list
                        risky = old
            built.append(risky)
        self._loaded = _Loaded(tuple(built), {})
        counts = {risky.name: len(risky) for risky in built}
        skipped = {risky.name: risky.skipped for risky in built if risky.skipped}
        if problems:
            log.warning("risky network list unreadable, keeping its previous entries", problems=problems)
        log.info("risky network lists loaded", entries=counts, skipped_lines=skipped or None)
        return counts

    def match(self, ip: str, location: Location | None) -> RiskMatch | None:
        """The first list `ip` is on (configured lists first, then Anonymous-IP flags)."""
        loaded = self._loaded
        cache = loaded.cache
        found = cache.get(ip, _MISSING)
        if found is _MISSING:
            found = self._resolve(loaded.lists, ip, location)
            if len(cache) >= self.cache_size:
                cache.clear()
            cache[ip] = found
        return found  # type: ignore[return-value]

    def _resolve(self, lists: tuple[RiskyList, ...], ip: str, location: Location | None) -> RiskMatch | None:
        asn = location.asn if location is not None else None
        if lists:
            try:  # inet_pton is C: far cheaper than ipaddress on the first sight of an address
                if ":" in ip:
                    version, value = 6, int.from_bytes(socket.inet_pton(socket.AF_INET6, ip), "big")
                    if value >> 32 == 0xFFFF:  # IPv4-mapped
                        version, value = 4, value & 0xFFFFFFFF
                else:
                    version, value = 4, int.from_bytes(socket.inet_pton(socket.AF_INET, ip), "big")
            except OSError:
                return None
            for risky in lists:
                entry = risky.match(version, value, asn)
                if entry is not None:
                    return RiskMatch(risky.name, risky.kind, entry)
        if self.use_anonymous_db and location is not None and location.anonymous:
            flag = location.anonymous[0]
            return RiskMatch(ANONYMOUS_LIST, ANONYMOUS_KIND[flag], flag)
        return None


class RiskyListSettings(Section):
    """One list of risky networks for `risky_network`: entries from a file and/or inline.

    An entry is an IP address, a CIDR or an ASN (`AS1234`); `#` starts a comment. The Tor
    Project's exit lists can be used as they are. Files are reread on SIGHUP.
    """

    name: str
    kind: Literal["tor", "vpn", "proxy", "hosting", "public"]
    file: str = ""
    entries: list[str] = []
