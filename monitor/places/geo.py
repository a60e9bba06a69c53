"""Location services one process lends all its shards: GeoIP, risky-network lists, shared networks.

Build one `GeoServices` per process (`GeoServices.from_settings(settings)`) and pass it to every
`build_shard(...)`: the GeoIP readers, caches and lists are then opened once, the warning
about a missing database is logged once, and the shared-network sketches count the accounts of
every shard of the process.

The shard calls `on_login` and `on_ip_change` right after its session table saw the event and
before any detector: they put the address's `Location` on the session (so detectors, flagged
sessions and responders all see it) and count logins towards shared networks. Detectors only
read: `context.geo.lookup`, `context.geo.risky.match`, `key in context.geo.shared`.

Wire SIGHUP to `GeoServices.reload()`: it reopens the `.mmdb` files (after geoipupdate) and
rereads the risky-network lists, each swapped in with one assignment.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

import structlog

import msgspec

from monitor.contract.events import PortalEvent
from monitor.contract.settings import Section
from monitor.places.geoip import GeoIP, Location, describe_problems
from monitor.places.networks import NetworkMap
from monitor.places.risky import RiskMatch, RiskyListSettings, RiskyNetworks
from monitor.places.shared_networks import SharedNetworks, SharedNetworkSettings, egress_key



class Placed(Protocol):
    """What GeoServices needs of a session (`monitor.state.sessions.Session` is one): its network,
    whether that is allowlisted, and a place to put the location it finds."""

    network: str | None
    allowlisted: bool
    location: Location | None


class GeoServices:
    """GeoIP lookups, risky-network lists and the shared-network set of one process."""

    def __init__(
        self,
        geoip: GeoIP | None = None,
        risky: RiskyNetworks | None = None,
        shared: SharedNetworks | None = None,
    ) -> None:
        self.geoip = geoip
        self.risky = risky if risky is not None else RiskyNetworks()
        self.shared = shared if shared is not None else SharedNetworks()
        self._lookup = geoip.lookup if geoip is not None else None
        # ip -> (egress key, allowlisted, risky match hiding the location): static until reload
        self._notes: dict[str, tuple[str, bool, RiskMatch | None]] = {}
        self._notes_size = geoip.cache_size if geoip is not None else 65_536

    @classmethod
    def from_settings(cls, settings: Any, location_detectors: Sequence[str] = ()) -> "GeoServices":
        """Open the databases and lists the settings name; one warning per problem, never raises.

        `location_detectors`: the detectors that need `geoip.city_db` (those declaring
        `requires_geoip`, `detectors.registry.location_detector_ids()`); without the database
        they see no locations and stay idle, and the log says which of the enabled ones are off."""
        config = settings.geoip
        geoip = GeoIP.open(config.city_db, config.asn_db, config.anonymous_db, config.cache_size)
        risky = RiskyNetworks(settings.networks.risky, use_anonymous_db=True)
        if settings.networks.risky:
            risky.reload()
        services = cls(geoip, risky, SharedNetworks.from_settings(settings.networks.shared))
        services._report(settings, geoip, location_detectors)
        return services

    def _report(self, settings: Any, geoip: GeoIP, location_detectors: Sequence[str]) -> None:
        log = structlog.get_logger()
        wanted = [
            detector_id
            for detector_id in location_detectors
            if getattr(getattr(settings.detectors, detector_id, None), "enabled", False)
        ]
        if not geoip.has_city and wanted:
            hint = (
                "set geoip.city_db to a GeoLite2-City .mmdb kept fresh by geoipupdate, "
                "or write demo databases with `portal-monitor geoip write-demo DIR`"
            )
            if geoip.paths["city_db"]:
                why = describe_problems([p for p in geoip.problems if p.key == "city_db"])
                log.warning(
                    f"GeoIP city database unavailable ({why}): location detectors disabled "
                    "until one can be read (reopened on SIGHUP)",
                    disabled=wanted,
                    hint=hint,
                )
            else:  # not configured: a choice, not a fault
                log.info("geoip.city_db is not set: location detectors off", disabled=wanted, hint=hint)
        others = [p for p in geoip.problems if p.key != "city_db"]
        if others:
            log.warning(
                f"GeoIP database unavailable ({describe_problems(others)}): continuing without it",
                databases=[p.key for p in others],
            )

    @property
    def located(self) -> bool:
        """True when a City database is open: the location detectors can run."""
        return self.geoip is not None and self.geoip.has_city

    def reload(self) -> None:
        """Reopen the GeoIP databases and reread the risky lists (call on SIGHUP).

        Each is swapped in with one assignment; a file that fails keeps its previous version.
        A City database that appears now enables the location detectors from the next login.
        """
        log = structlog.get_logger()
        if self.geoip is not None:
            problems = self.geoip.reload()
            if problems:
                log.warning(f"GeoIP reload kept previous databases ({describe_problems(problems)})")
            log.info("geoip databases loaded", databases=self.geoip.loaded())
        self.risky.reload()
        self._notes = {}

    # -- enrichment (called by the shard, before the detectors) ------------------------------

    def lookup(self, ip: str) -> Location | None:
        lookup = self._lookup
        return lookup(ip) if lookup is not None else None

    def on_login(self, event: PortalEvent, session: Placed) -> None:
        ip = event.ip
        if ip is None:
            return
        location = self._lookup(ip) if self._lookup is not None else None
        session.location = location
        shared = self.shared
        if shared.enabled and not session.allowlisted and self.risky.match(ip, location) is None:
            shared.observe(egress_key(ip, session.network), event.account_id, event.at)

    def on_ip_change(self, event: PortalEvent, session: Placed) -> None:
        if self._lookup is not None and event.ip is not None:
            session.location = self._lookup(event.ip)

    # -- what the location detectors ask ----------------------------------------------------

    def unreliable(self, ip: str, location: Location | None, networks: NetworkMap) -> tuple[str, RiskMatch | None] | None:
        """Why this address's place says nothing about where the person is, or None.

        ("allowlisted", None), ("shared", None) or ("risky", match) for Tor, VPN, proxy and
        hosting networks (their `risky_network` alert covers them).
        """
        note = self._notes.get(ip)
        if note is None:
            info = networks.lookup(ip)
            if info is None:
                return ("invalid", None)
            match = self.risky.match(ip, location)
            note = (egress_key(ip, info.network), info.allowlisted, match if match is not None and match.hides_location else None)
            if len(self._notes) >= self._notes_size:
                self._notes.clear()
            self._notes[ip] = note
        key, allowlisted, risky = note
        if allowlisted:
            return ("allowlisted", None)
        if key in self.shared:
            return ("shared", None)
        if risky is not None:
            return ("risky", risky)
        return None


class NetworkSettings(Section):
    """Networks that never count as different: a school's or the council's NAT egress."""

    allowlist: list[str] = []
    risky: list[RiskyListSettings] = []
    shared: SharedNetworkSettings = msgspec.field(default_factory=SharedNetworkSettings)


class GeoIPSettings(Section):
    """MaxMind-format databases (GeoLite2/GeoIP2 `.mmdb`), kept fresh by geoipupdate.

    Without `city_db` (or when it cannot be read) `impossible_travel` and `new_country` are
    disabled with one warning; `asn_db` adds the network's ASN and organisation;
    `anonymous_db` (GeoIP2 Anonymous IP) flags VPNs, Tor exits, proxies and hosting providers.
    """

    city_db: str = ""
    asn_db: str = ""
    anonymous_db: str = ""
    cache_size: int = 65_536
