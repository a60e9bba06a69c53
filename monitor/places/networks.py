"""Networks an IP address belongs to, as the detectors compare them.

Two logins "from the same network" means the same IPv4 /24 or IPv6 /64: a household, an
office or a school behind one NAT. Networks configured as allowlisted (a school's or the
council's NAT egress) never count as different from anything.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Iterable, NamedTuple

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class AddressInfo(NamedTuple):
    """What the detectors need to know about one IP address."""

    network: str  # "81.2.69.0/24" or "2a02:c7f:1234:5600::/64"
    allowlisted: bool


class NetworkMap:
    """Validates IP addresses and maps them to their network, with a bounded cache.

    The cache is per shard and cleared when full, so memory stays bounded whatever the
    variety of addresses; most events repeat an address seen moments before. The addresses of
    one network share one `AddressInfo`: a full cache then holds a few thousand of them, not
    100,000 (each with its network's text).
    """

    def __init__(self, allowlist: Iterable[str] = (), cache_size: int = 100_000) -> None:
        self.allowlist: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(cidr, strict=False) for cidr in allowlist
        )
        self._cache: dict[str, AddressInfo | None] = {}
        self._infos: dict[AddressInfo, AddressInfo] = {}  # one instance per distinct answer
        self._cache_size = cache_size

    @property
    def known(self) -> dict[str, AddressInfo | None]:
        """The addresses looked up lately, with their answer (None: not an address); read-only
        for callers, who ask `lookup` for anything not in it. The same dict for the map's life."""
        return self._cache

    def lookup(self, ip: str) -> AddressInfo | None:
        """The address's network, or None when `ip` is not a valid IPv4 or IPv6 address."""
        info = self._cache.get(ip, False)
        if info is not False:
            return info  # type: ignore[return-value]
        info = self._resolve(ip)
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
            self._infos.clear()
        if info is not None:
            info = self._infos.setdefault(info, info)
        self._cache[ip] = info
        return info

    def _resolve(self, ip: str) -> AddressInfo | None:
        if not self.allowlist:
            network = _fast_network(ip)
            if network is not None:
                return AddressInfo(network, False)
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return None
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
            return None  # a zone id (`fe80::1%eth0`) names a link of the portal's host, not a place
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        prefix = 24 if address.version == 4 else 64
        network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
        allowlisted = any(
            address.version == net.version and address in net for net in self.allowlist
        )
        return AddressInfo(str(network), allowlisted)


_V4_MAPPED = bytes(10) + b"\xff\xff"
_ZERO_HOST = bytes(8)


def _fast_network(ip: str) -> str | None:
    """The address's /24 or /64 through the C parser (inet_pton), or None to ask `ipaddress`.

    Whatever inet_pton accepts, `ipaddress` accepts and maps to the same network (tests
    compare them on generated addresses); what it refuses (scope ids, bad input) goes the slow,
    authoritative way. About ten times faster than `ipaddress`.
    """
    if ":" in ip:
        try:
            packed = socket.inet_pton(socket.AF_INET6, ip)
        except (OSError, ValueError):
            return None
        if packed[:12] == _V4_MAPPED:
            a, b, c = packed[12:15]
            return f"{a}.{b}.{c}.0/24"
        return socket.inet_ntop(socket.AF_INET6, packed[:8] + _ZERO_HOST) + "/64"
    try:
        a, b, c, _ = socket.inet_pton(socket.AF_INET, ip)
    except (OSError, ValueError):
        return None
    return f"{a}.{b}.{c}.0/24"
