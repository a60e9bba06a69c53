"""The synthetic world the demo traffic comes from: named networks with their place and owner.

Every network here is invented. The address ranges are ordinary public (globally routable)
IPv4 and IPv6 space so that code treating private or documentation ranges specially behaves as
it would in production, but the owners, places and autonomous systems given to them are made up:
the AS numbers are all from the private-use range 64512-65534 (RFC 6996), which no real network
announces, and the organisation names are fictional. The latitude and longitude are those of the
real town or city named, so distances and travel speeds between networks are realistic.

This table is the single source for the GeoIP City and ASN databases the tests and the demo
write, so every network carries everything those need.
"""

from __future__ import annotations

import ipaddress
import math
import random
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

NetworkKind = Literal[
    "school_nat",
    "council_office",
    "home_broadband",
    "mobile_cgnat",
    "cybercafe",
    "tor_exit",
    "hosting_vpn",
    "foreign_isp",
]

KINDS: tuple[NetworkKind, ...] = NetworkKind.__args__  # type: ignore[attr-defined]

#: What MaxMind's GeoIP2 `traits.user_type` would call each kind of network.
USER_TYPE: MappingProxyType[str, str] = MappingProxyType(
    {
        "school_nat": "school",
        "council_office": "government",
        "home_broadband": "residential",
        "mobile_cgnat": "cellular",
        "cybercafe": "cafe",
        "tor_exit": "consumer_privacy_network",
        "hosting_vpn": "hosting",
        "foreign_isp": "residential",
    }
)


@dataclass(frozen=True, slots=True)
class Network:
    """A named block of addresses, where it is and who announces it."""

    name: str
    cidr: str
    kind: NetworkKind
    country: str  # ISO 3166-1 alpha-2
    city: str
    latitude: float
    longitude: float
    accuracy_radius_km: int
    asn: int
    organisation: str
    first: int = field(init=False, repr=False, compare=False)
    size: int = field(init=False, repr=False, compare=False)
    version: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        net = ipaddress.ip_network(self.cidr)  # strict: host bits must be zero
        object.__setattr__(self, "first", int(net.network_address))
        object.__setattr__(self, "size", net.num_addresses)
        object.__setattr__(self, "version", net.version)

    @property
    def ip_network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        """The block as an `ipaddress` network."""
        return ipaddress.ip_network(self.cidr)


@dataclass(frozen=True, slots=True)
class School:
    """A school using the Schools' Portal, and the NAT its staff reach the portal through."""

    school_id: str  # DfE LAESTAB number (local authority code + establishment number)
    name: str
    network: Network


def _net(name: str, cidr: str, kind: NetworkKind, country: str, city: str, lat: float,
         lon: float, radius: int, asn: int, org: str) -> Network:
    return Network(name, cidr, kind, country, city, lat, lon, radius, asn, org)


# Real coordinates of the places used.
_PLACES: dict[str, tuple[str, float, float]] = {
    "Preston": ("GB", 53.7632, -2.7031),
    "Lancaster": ("GB", 54.0466, -2.8007),
    "Blackpool": ("GB", 53.8175, -3.0357),
    "Burnley": ("GB", 53.7893, -2.2405),
    "Blackburn": ("GB", 53.7486, -2.4875),
    "Chorley": ("GB", 53.6530, -2.6327),
    "Morecambe": ("GB", 54.0690, -2.8690),
    "Clitheroe": ("GB", 53.8711, -2.3916),
    "Accrington": ("GB", 53.7534, -2.3638),
    "Lytham St Annes": ("GB", 53.7420, -2.9970),
    "Fleetwood": ("GB", 53.9230, -3.0150),
    "Manchester": ("GB", 53.4808, -2.2426),
    "Birmingham": ("GB", 52.4862, -1.8904),
    "London": ("GB", 51.5074, -0.1278),
    "Frankfurt am Main": ("DE", 50.1109, 8.6821),
    "Amsterdam": ("NL", 52.3676, 4.9041),
    "Bucharest": ("RO", 44.4268, 26.1025),
    "Lagos": ("NG", 6.5244, 3.3792),
    "Madrid": ("ES", 40.4168, -3.7038),
    "New York": ("US", 40.7128, -74.0060),
    "Paris": ("FR", 48.8566, 2.3522),
}

# (name, cidr, kind, city, accuracy radius km, asn, organisation)
_TABLE: tuple[tuple[str, str, NetworkKind, str, int, int, str], ...] = (
    # School NATs: the county's schools network, one small NAT pool per school.
    ("school-ribbleside-high", "81.86.11.64/27", "school_nat", "Preston", 5, 64601, "Red Rose Schools Network"),
    ("school-avenham-primary", "81.86.12.64/27", "school_nat", "Preston", 5, 64601, "Red Rose Schools Network"),
    ("school-fulwood-park-academy", "81.86.13.64/27", "school_nat", "Preston", 5, 64601, "Red Rose Schools Network"),
    ("school-lune-valley-academy", "81.86.14.64/27", "school_nat", "Lancaster", 5, 64601, "Red Rose Schools Network"),
    ("school-williamson-park-primary", "81.86.15.64/27", "school_nat", "Lancaster", 5, 64601, "Red Rose Schools Network"),
    ("school-north-shore-high", "81.86.16.64/27", "school_nat", "Blackpool", 5, 64601, "Red Rose Schools Network"),
    ("school-stanley-park-primary", "81.86.17.64/27", "school_nat", "Blackpool", 5, 64601, "Red Rose Schools Network"),
    ("school-pendle-edge-high", "81.86.18.64/27", "school_nat", "Burnley", 5, 64601, "Red Rose Schools Network"),
    ("school-towneley-primary", "81.86.19.64/27", "school_nat", "Burnley", 5, 64601, "Red Rose Schools Network"),
    ("school-astley-park-high", "81.86.20.64/27", "school_nat", "Chorley", 5, 64601, "Red Rose Schools Network"),
    ("school-bay-view-primary", "81.86.21.64/27", "school_nat", "Morecambe", 5, 64601, "Red Rose Schools Network"),
    ("school-castle-hill-academy", "81.86.22.64/27", "school_nat", "Clitheroe", 5, 64601, "Red Rose Schools Network"),
    # The county council's offices (an allowlist candidate: many staff share its NAT).
    ("lcc-county-hall", "194.66.120.0/26", "council_office", "Preston", 5, 64602, "Lancashire County Council"),
    # Home broadband.
    ("redrose-fibre-preston", "86.140.0.0/18", "home_broadband", "Preston", 20, 64610, "Red Rose Fibre"),
    ("redrose-fibre-preston-v6", "2a02:c7c:5100::/48", "home_broadband", "Preston", 20, 64610, "Red Rose Fibre"),
    ("redrose-fibre-lancaster", "86.140.64.0/19", "home_broadband", "Lancaster", 20, 64610, "Red Rose Fibre"),
    ("redrose-fibre-burnley", "86.140.96.0/19", "home_broadband", "Burnley", 20, 64610, "Red Rose Fibre"),
    ("redrose-fibre-chorley", "86.140.128.0/19", "home_broadband", "Chorley", 20, 64610, "Red Rose Fibre"),
    ("pennine-broadband-blackburn", "92.24.0.0/18", "home_broadband", "Blackburn", 50, 64611, "Pennine Broadband"),
    ("pennine-broadband-blackburn-v6", "2a05:4f80:b10::/48", "home_broadband", "Blackburn", 50, 64611, "Pennine Broadband"),
    ("pennine-broadband-clitheroe", "92.24.64.0/20", "home_broadband", "Clitheroe", 50, 64611, "Pennine Broadband"),
    ("pennine-broadband-accrington", "92.24.80.0/20", "home_broadband", "Accrington", 50, 64611, "Pennine Broadband"),
    ("pennine-broadband-morecambe", "92.24.96.0/19", "home_broadband", "Morecambe", 50, 64611, "Pennine Broadband"),
    ("fylde-cable-blackpool", "77.98.0.0/18", "home_broadband", "Blackpool", 20, 64612, "Fylde Coast Cable"),
    ("fylde-cable-lytham", "77.98.64.0/19", "home_broadband", "Lytham St Annes", 20, 64612, "Fylde Coast Cable"),
    ("fylde-cable-fleetwood", "77.98.96.0/19", "home_broadband", "Fleetwood", 20, 64612, "Fylde Coast Cable"),
    # Mobile carriers: carrier-grade NAT, geolocated only to the country.
    ("albion-mobile", "31.94.0.0/17", "mobile_cgnat", "Manchester", 1000, 64650, "Albion Mobile"),
    ("albion-mobile-v6", "2a0c:5e40:e00::/48", "mobile_cgnat", "Manchester", 1000, 64650, "Albion Mobile"),
    ("tricorn-mobile", "82.132.192.0/18", "mobile_cgnat", "London", 1000, 64651, "Tricorn Mobile"),
    ("meridian-mobile", "188.29.0.0/17", "mobile_cgnat", "Birmingham", 500, 64652, "Meridian Mobile"),
    # A cybercafe on Fishergate, on its ISP's business line.
    ("fishergate-netcafe", "86.141.200.8/29", "cybercafe", "Preston", 5, 64610, "Red Rose Fibre"),
    # Tor exit relays.
    ("tor-exit-london", "185.130.44.96/28", "tor_exit", "London", 100, 64623, "Thames Relay Hosting"),
    ("tor-exit-frankfurt", "185.246.188.0/28", "tor_exit", "Frankfurt am Main", 100, 64620, "Onion Relay Collective"),
    ("tor-exit-frankfurt-v6", "2a0d:8f40:2::/48", "tor_exit", "Frankfurt am Main", 100, 64620, "Onion Relay Collective"),
    ("tor-exit-amsterdam", "193.189.100.192/28", "tor_exit", "Amsterdam", 100, 64621, "Polder Privacy Hosting"),
    ("tor-exit-bucharest", "89.38.97.112/28", "tor_exit", "Bucharest", 100, 64622, "Carpathian Anonymity Services"),
    # A hosting provider that sells a consumer VPN.
    ("northgate-vpn-london", "45.83.220.0/22", "hosting_vpn", "London", 50, 64630, "Northgate Cloud VPN"),
    # Ordinary ISPs abroad.
    ("eko-broadband-lagos", "102.89.0.0/18", "foreign_isp", "Lagos", 50, 64640, "Eko Broadband"),
    ("meseta-fibra-madrid", "88.26.0.0/17", "foreign_isp", "Madrid", 20, 64641, "Meseta Fibra"),
    ("hudson-cable-new-york", "72.229.0.0/17", "foreign_isp", "New York", 20, 64642, "Hudson Cable"),
    ("lutece-telecom-paris", "90.84.0.0/17", "foreign_isp", "Paris", 20, 64643, "Lutece Telecom"),
)

NETWORKS: tuple[Network, ...] = tuple(
    _net(name, cidr, kind, _PLACES[city][0], city, _PLACES[city][1], _PLACES[city][2], radius, asn, org)
    for name, cidr, kind, city, radius, asn, org in _TABLE
)

NETWORK_BY_NAME: MappingProxyType[str, Network] = MappingProxyType({n.name: n for n in NETWORKS})

#: The council offices' NAT, which deployments put on the shared-network allowlist.
COUNCIL_NETWORK: Network = NETWORK_BY_NAME["lcc-county-hall"]

_SCHOOL_NAMES: tuple[tuple[str, str, str], ...] = (
    ("8884001", "Ribbleside High School", "school-ribbleside-high"),
    ("8882001", "Avenham Primary School", "school-avenham-primary"),
    ("8884002", "Fulwood Park Academy", "school-fulwood-park-academy"),
    ("8884003", "Lune Valley Academy", "school-lune-valley-academy"),
    ("8882002", "Williamson Park Primary School", "school-williamson-park-primary"),
    ("8904001", "North Shore High School", "school-north-shore-high"),
    ("8902001", "Stanley Park Primary School", "school-stanley-park-primary"),
    ("8884004", "Pendle Edge High School", "school-pendle-edge-high"),
    ("8882003", "Towneley Primary School", "school-towneley-primary"),
    ("8884005", "Astley Park High School", "school-astley-park-high"),
    ("8882004", "Bay View Primary School", "school-bay-view-primary"),
    ("8884006", "Castle Hill Academy", "school-castle-hill-academy"),
)

SCHOOLS: tuple[School, ...] = tuple(
    School(school_id, name, NETWORK_BY_NAME[net]) for school_id, name, net in _SCHOOL_NAMES
)


def networks_of_kind(kind: NetworkKind) -> tuple[Network, ...]:
    """All networks of one kind, in table order."""
    return tuple(n for n in NETWORKS if n.kind == kind)


def distance_km(a: Network, b: Network) -> float:
    """Great-circle distance between the located centres of two networks."""
    lat1, lon1, lat2, lon2 = map(math.radians, (a.latitude, a.longitude, b.latitude, b.longitude))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0088 * math.asin(math.sqrt(h))


def host_count(network: Network) -> int:
    """How many addresses of `network` a host can have (IPv4 skips network and broadcast)."""
    return network.size - 2 if network.size > 2 else network.size


def ip_at(network: Network, index: int) -> str:
    """The `index`-th usable host address of `network`, wrapping round at the end."""
    a = network.first + (1 if network.size > 2 else 0) + index % host_count(network)
    if network.version == 4:
        return f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}"
    return str(ipaddress.IPv6Address(a))


def random_ip(network: Network, rng: random.Random) -> str:
    """A random usable host address inside `network`."""
    return ip_at(network, rng.randrange(host_count(network)))
