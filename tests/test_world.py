"""The synthetic world of networks that the demo traffic and the GeoIP fixtures are made from."""

from __future__ import annotations

import ipaddress
import random
from collections import Counter

from monitor.demo.world import (
    COUNCIL_NETWORK,
    KINDS,
    NETWORK_BY_NAME,
    NETWORKS,
    SCHOOLS,
    USER_TYPE,
    distance_km,
    random_ip,
)


def test_every_network_is_complete_and_publicly_routable() -> None:
    assert len(NETWORK_BY_NAME) == len(NETWORKS), "names are unique"
    for net in NETWORKS:
        block = ipaddress.ip_network(net.cidr)  # strict: no host bits set
        assert block.is_global, net.name
        assert net.kind in KINDS and net.kind in USER_TYPE
        assert len(net.country) == 2 and net.country.isupper()
        assert net.city and net.organisation
        assert -90 <= net.latitude <= 90 and -180 <= net.longitude <= 180
        assert net.accuracy_radius_km > 0
        assert 64512 <= net.asn <= 65534, "private-use AS numbers: clearly not real networks"
        if block.version == 6:
            assert block.prefixlen == 48


def test_networks_do_not_overlap() -> None:
    blocks = [ipaddress.ip_network(n.cidr) for n in NETWORKS]
    for i, a in enumerate(blocks):
        for b in blocks[i + 1:]:
            assert a.version != b.version or not a.overlaps(b), (a, b)


def test_the_world_has_what_the_demo_needs() -> None:
    kinds = Counter(n.kind for n in NETWORKS)
    assert set(kinds) == set(KINDS)
    assert kinds["school_nat"] == len(SCHOOLS) == 12
    assert kinds["mobile_cgnat"] >= 3 and kinds["tor_exit"] >= 3
    assert all(n.accuracy_radius_km >= 500 for n in NETWORKS if n.kind == "mobile_cgnat")
    assert {n.city for n in NETWORKS if n.kind == "foreign_isp"} == {"Lagos", "Madrid", "New York", "Paris"}
    assert {n.city for n in NETWORKS if n.kind == "cybercafe"} == {"Preston"}
    assert COUNCIL_NETWORK.kind == "council_office"
    assert {"Preston", "Lancaster", "Blackpool", "Burnley"} <= {s.network.city for s in SCHOOLS}
    assert len({s.school_id for s in SCHOOLS}) == len(SCHOOLS)


def test_distances_are_those_of_the_real_places() -> None:
    preston = NETWORK_BY_NAME["school-ribbleside-high"]
    assert 25 < distance_km(preston, NETWORK_BY_NAME["redrose-fibre-lancaster"]) < 35
    assert 5000 < distance_km(preston, NETWORK_BY_NAME["eko-broadband-lagos"]) < 5500
    assert 1400 < distance_km(preston, NETWORK_BY_NAME["meseta-fibra-madrid"]) < 1600


def test_random_ip_stays_inside_its_network() -> None:
    rng = random.Random(1)
    for net in NETWORKS:
        block = ipaddress.ip_network(net.cidr)
        for _ in range(50):
            address = ipaddress.ip_address(random_ip(net, rng))
            assert address in block
            if block.version == 4:
                assert address not in (block.network_address, block.broadcast_address)
