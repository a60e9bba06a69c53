"""NetworkMap: which network an address belongs to, and which strings are not addresses at all.

The fast path (socket.inet_pton) must agree with `ipaddress` on every input, IPv4 and IPv6.
"""

from __future__ import annotations

import ipaddress
import random

from monitor.places.networks import NetworkMap


def reference(ip: str) -> str | None:
    if "%" in ip:
        return None  # an IPv6 zone id names a local interface: refused by the contract (docs/contract.md)
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 64
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def test_fast_path_agrees_with_ipaddress() -> None:
    cases = ["81.2.69.10", "0.0.0.0", "255.255.255.255", "01.2.3.4", "1.2.3.04", "1.2.3", "1.2.3.4.5",
             " 1.2.3.4", "1.2.3.4\n", "256.1.1.1", "1..3.4", "0x1.2.3.4", "1.2.3.+4", "\u0661.2.3.4", "1.2.3.4\x00",
             "", "::ffff:81.2.69.10", "2a02:c7f:1234:5600::1", "not an ip"]
    cases += ["::", "::1", "fe80::1%eth0", "::ffff:01.2.3.4", "0:0:0:0:0:ffff:1.2.3.4", "::1.2.3.4", "1:0:1:0:1::",
              "0:1:0:1:0:1:0:1", "2001:0db8:0000:0000:0000:0000:0000:0001", "1::2::3", ":1::", "ABCD::EF", "1:2:3:4:5:6:7:8:9"]
    rng = random.Random(5)
    for _ in range(20_000):
        cases.append(".".join(str(rng.randrange(0, 300)).zfill(rng.choice((1, 1, 2, 3))) for _ in range(4)))
        cases.append("".join(rng.choice("0123456789. x+-") for _ in range(rng.randrange(1, 16))))
        hextets = [format(rng.choice((0, 0, 1, rng.randrange(65536))), rng.choice(("x", "04x", "X"))) for _ in range(8)]
        i = rng.randrange(8)
        j = rng.randrange(i, 9)
        cases.append(":".join(hextets) if rng.random() < 0.5 else ":".join(hextets[:i]) + "::" + ":".join(hextets[j:]))
        cases.append("".join(rng.choice("0123456789abcdef:.") for _ in range(rng.randrange(2, 20))))
    networks = NetworkMap()
    for ip in cases:
        info = networks.lookup(ip)
        assert (info.network if info else None) == reference(ip), repr(ip)


def test_allowlisted_networks_never_count_as_different() -> None:
    networks = NetworkMap(["10.20.0.0/16", "2a02:c7f::/32"])
    assert networks.lookup("10.20.3.4") == ("10.20.3.0/24", True)
    assert networks.lookup("10.21.3.4") == ("10.21.3.0/24", False)
    assert networks.lookup("2a02:c7f:1234:5600::1") == ("2a02:c7f:1234:5600::/64", True)
    assert networks.lookup("01.2.3.4") is None


def test_addresses_of_one_network_share_one_answer() -> None:
    networks = NetworkMap(cache_size=10)
    first = networks.lookup("81.2.69.1")
    assert networks.lookup("81.2.69.2") is first
    assert networks.lookup("81.2.70.1") != first
    for n in range(3, 100):  # past the cache's size: cleared and resolved again, still bounded
        assert networks.lookup(f"81.2.69.{n}") == first
    assert len(networks._infos) <= 10
