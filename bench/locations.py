"""Location settings for the benchmark: demo GeoIP databases of the generator's world.

The location detectors (impossible_travel, new_country) stay off without a City database and
risky_network has little to match without lists, so "every detector on" needs both: City, ASN
and Anonymous-IP `.mmdb` files written from `monitor.demo.world` (the networks the generated
traffic comes from) and its Tor exits as a risky list. Returned as `PORTAL_MONITOR_*`
variables for the daemon, replay and the memory runs alike.
"""

from __future__ import annotations

import json
from pathlib import Path


def location_environment(folder: Path) -> dict[str, str]:
    """Write the databases and the Tor list into `folder`; the settings naming them."""
    from monitor.demo.world import NETWORKS, networks_of_kind
    from monitor.places.geoip_demo import write_databases

    folder.mkdir(parents=True, exist_ok=True)
    paths = write_databases(NETWORKS, folder)
    tor = folder / "tor-exits.txt"
    tor.write_text("".join(f"{network.cidr}\n" for network in networks_of_kind("tor_exit")))
    env = {f"PORTAL_MONITOR_GEOIP__{key.upper()}": path for key, path in paths.items()}
    env["PORTAL_MONITOR_NETWORKS__RISKY"] = f'[{{name = "tor-exits", kind = "tor", file = {json.dumps(str(tor))}}}]'
    return env
