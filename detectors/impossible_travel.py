"""`impossible_travel`: two consecutive activities of one account too far apart for the time between."""

from __future__ import annotations

import ipaddress
import math
from typing import Any, Sequence

import msgspec

from detectors._places import EARTH_RADIUS_KM, distance_km, duration, place_evidence, where
from detectors.base import IP_CHANGED, Detector, DetectorContext
from monitor.contract import policy
from monitor.contract.settings import Section
from monitor.contract.alerts import Alert, Severity, new_alert, utc
from monitor.contract.events import PortalEvent
from monitor.places.geoip import Location
from monitor.state.interning import by_account
from monitor.state.sessions import AccountState


class ImpossibleTravelSettings(Section):
    enabled: bool = True
    min_distance_km: float = 500.0
    """Distance between the two places after subtracting both places' radii (GeoIP accuracy, plus
    the organisation's radius for its networks)."""
    min_speed_kmh: float = 800.0
    """Speed that distance implies; 800 km/h is about an airliner's cruising speed."""
    coarse_radius_km: float = 500.0
    """An IP change inside a session to or from a place GeoIP knows only this well or worse (a
    mobile carrier's hub, a roaming phone's home country) is the same browser changing networks,
    not travel: it is neither compared nor remembered. Logins are always compared."""
    organisation_radius_km: float = 100.0
    """How far from its GeoIP place the users of an organisation's network may be: an
    allowlisted network, or one learnt as shared (`networks.shared`). Added to the network's
    GeoIP accuracy radius, so a school's or a council's NAT is a place the size of its area."""
    organisation_networks: dict[str, float] = msgspec.field(default_factory=dict)
    """Radius (km) per CIDR, instead of `organisation_radius_km`, for an organisation network
    whose egress is far from its users: a council VPN egressing in London, a school's
    filtering proxy in Amsterdam. Only for networks that are allowlisted or learnt as shared."""
    severity: Severity = "high"

    def __post_init__(self) -> None:
        if self.organisation_radius_km < 0:
            raise ValueError("detectors.impossible_travel.organisation_radius_km: must not be negative")
        for cidr, radius in self.organisation_networks.items():
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"detectors.impossible_travel.organisation_networks: not a CIDR: {cidr!r}") from None
            if radius < 0:
                raise ValueError(f"detectors.impossible_travel.organisation_networks: {cidr}: radius must not be negative")


class LastPlace(msgspec.Struct, array_like=True, gc=False):
    """Where the account was last seen from a reliable network."""

    at: float
    ip: str
    session_id: str
    location: Location


class ImpossibleTravel(Detector):
    """Consecutive located activities of an account (logins, and IP changes inside a session)
    further apart than anyone can travel in the time between them.

    A login from where the account's holder cannot be is someone else using their login, which
    the Schools' Portal Site Terms forbid: "An end user must only use login details which have
    been issued to them for their personal use."; and the Parent Portal Acceptable Use Policy:
    "You must never use anyone else's username or password".

    Distance is the great-circle distance minus both places' accuracy radii (a mobile network
    geolocated to the carrier's hub with a 1000 km radius is never "far"); it must be at least
    `min_distance_km` at a speed of at least `min_speed_kmh`. A session that switches to or
    from a network located no better than `coarse_radius_km` (Wi-Fi to a roaming phone's home
    carrier) is one browser changing networks, not travel. The previous place counts until
    the last activity of its session from the same address, or its logout.

    An organisation's network (allowlisted, or learnt as shared because many accounts log in
    from it) is a place like any other, only wider: its GeoIP place with its accuracy radius
    plus `organisation_radius_km` (or its own radius in `organisation_networks`), because its
    users are somewhere in the organisation's area, not at the NAT's address. Staff spend most
    of their portal time on such networks, so a teacher at the school's network and then, 90
    minutes later, in Lagos is impossible travel; the same school and then a home across the
    county is not, nor is a council VPN egressing in London and then a home in Preston (less
    than `min_distance_km` apart once both radii are taken off). A network learnt as shared
    after it was remembered is widened when it is compared, not forgotten. Only the places
    that say nothing about where the person is are neither compared nor remembered: Tor,
    anonymous VPN, proxy and hosting networks (which `risky_network` reports).

    A place is forgotten once no activity can be too far from it: after a session's longest
    duration plus the time half the Earth's circumference takes at `min_speed_kmh` (37 h with
    the defaults). An older place can no longer give an alert, so forgetting it loses none;
    the next located activity is then compared with nothing, as for an account never seen.
    """

    id = "impossible_travel"
    event_types = ("login_succeeded", IP_CHANGED, "logout")
    requires_geoip = True

    def __init__(self, settings: ImpossibleTravelSettings, context: DetectorContext) -> None:
        self.settings = settings
        self.geo = context.geo
        self.networks = context.networks
        self.last: dict[str, LastPlace] = {}
        speed = settings.min_speed_kmh
        travel = math.pi * EARTH_RADIUS_KM / speed * 3600.0 if speed > 0 else math.inf
        self.forget_after = context.sessions.max_duration + travel
        self._swept_hour: int | None = None
        self._forgotten: list[str] = []
        self._organisation: list[tuple[Any, float]] = sorted(
            ((ipaddress.ip_network(cidr, strict=False), radius) for cidr, radius in settings.organisation_networks.items()),
            key=lambda item: -item[0].prefixlen,  # the most specific network first
        )
        self._organisation_radius: dict[str, float] = {}  # ip -> radius, for `organisation_networks`

    def _radius(self, ip: str, location: Location) -> float | None:
        """How wide (km) the place of `ip` is, or None when it says nothing about where the person is.

        GeoIP's accuracy radius; plus the organisation's radius for an allowlisted or shared
        network; None for Tor, VPN, proxy and hosting networks, and for what is not an address.
        """
        radius = location.radius_km or 0.0
        why = self.geo.unreliable(ip, location, self.networks)  # type: ignore[union-attr]
        if why is None:
            return radius
        if why[0] == "allowlisted" or why[0] == "shared":
            return radius + self._organisation_km(ip)
        return None

    def _organisation_km(self, ip: str) -> float:
        if not self._organisation:
            return self.settings.organisation_radius_km
        known = self._organisation_radius.get(ip)
        if known is None:
            known = self.settings.organisation_radius_km
            try:
                address = ipaddress.ip_address(ip)
            except ValueError:
                address = None
            if address is not None:
                for network, radius in self._organisation:
                    if address.version == network.version and address in network:
                        known = radius
                        break
            if len(self._organisation_radius) >= 65_536:
                self._organisation_radius.clear()
            self._organisation_radius[ip] = known
        return known

    def on_event(self, event: PortalEvent, account: AccountState) -> list[Alert] | None:
        if event.type == "logout":
            last = self.last.get(event.account_id)
            if last is not None and last.session_id == event.session_id:
                self._left(last, event)
            return None
        session = account.sessions.get(event.session_id)  # type: ignore[arg-type]
        ip = event.ip
        if session is None or ip is None:
            return None
        location = session.location
        if location is None or location.latitude is None or location.longitude is None:
            return None
        at = event.at
        account_id = event.account_id
        previous = self.last.get(account_id)
        if previous is not None and at - previous.at > self.forget_after:
            previous = None  # too long ago to be too far: as if never seen (the sweep drops it)
        if previous is not None and previous.ip == ip and at >= previous.at:
            previous.at = at  # the same address again: no move; the common login
            previous.session_id = session.session_id
            return None
        radius = self._radius(ip, location)
        if radius is None:
            return None
        handover = False
        if event.type != "login_succeeded" and previous is not None:
            coarse = self.settings.coarse_radius_km
            if (location.radius_km or 0.0) >= coarse:
                return None  # onto a carrier located only to its hub: keep the better place
            handover = previous.session_id == session.session_id and (previous.location.radius_km or 0.0) >= coarse
        self.last[account.account_id] = LastPlace(at, ip, session.session_id, location)  # the id's shared copy
        if previous is None or previous.ip == ip or handover:
            return None
        previous_radius = self._radius(previous.ip, previous.location)
        if previous_radius is None:
            return None  # listed as Tor, VPN, proxy or hosting since it was remembered
        since = previous.at
        earlier = account.sessions.get(previous.session_id)
        if (
            earlier is not None
            and earlier is not session
            and earlier.last_ip == previous.ip
            and since < earlier.last_activity <= at
        ):
            since = earlier.last_activity  # still there until the session's last activity
        distance = distance_km(previous.location, location)
        beyond = distance - previous_radius - radius
        settings = self.settings
        if beyond < settings.min_distance_km:
            return None
        elapsed = at - since
        speed = beyond / (elapsed / 3600.0) if elapsed > 0 else None
        if speed is not None and speed < settings.min_speed_kmh:
            return None
        return [
            self._alert(
                event, session.session_id, previous, since, location, distance, beyond, elapsed, speed,
                (previous_radius, radius),
            )
        ]

    @staticmethod
    def _left(last: LastPlace, event: PortalEvent) -> None:
        """A logout of the last place's session: the person was still there when logging out."""
        if (event.ip is None or event.ip == last.ip) and event.at > last.at:
            last.at = event.at

    def _alert(
        self,
        event: PortalEvent,
        session_id: str,
        previous: LastPlace,
        since: float,
        location: Location,
        distance: float,
        beyond: float,
        elapsed: float,
        speed: float | None,
        radii: tuple[float, float],
    ) -> Alert:
        at = event.at
        ip = event.ip or ""
        verb = "logged in" if event.type == "login_succeeded" else f"continued session {session_id}"
        pace = f"a speed of {speed:,.0f} km/h" if speed is not None else "being in both places at once"
        organisation = (
            radii[0] - (previous.location.radius_km or 0.0),
            radii[1] - (location.radius_km or 0.0),
        )
        allowing = "GeoIP accuracy and the organisation network's area" if any(organisation) else "GeoIP accuracy"
        summary = (
            f"Account {event.account_id} {verb} from {where(location, ip)} at {utc(at):%Y-%m-%d %H:%M}Z, "
            f"{duration(elapsed)} after it was active from {where(previous.location, previous.ip)} at "
            f"{utc(since):%Y-%m-%d %H:%M}Z: {distance:,.0f} km apart (at least {beyond:,.0f} km allowing "
            f"for {allowing}), which needs {pace}, faster than anyone can travel."
        )
        session_ids = [session_id]
        if previous.session_id != session_id:
            session_ids.append(previous.session_id)
        return new_alert(
            detector=self.id,
            severity=self.settings.severity,
            account_id=event.account_id,
            at=at,
            trigger=event.event_id,
            session_ids=session_ids,
            summary=summary,
            evidence={
                "from": place_evidence(previous.location, previous.ip, since, previous.session_id),
                "to": place_evidence(location, ip, at, session_id),
                "distance_km": round(distance, 1),
                "distance_beyond_accuracy_km": round(beyond, 1),
                "accuracy_radii_km": [previous.location.radius_km, location.radius_km],
                "organisation_radii_km": [round(organisation[0], 1), round(organisation[1], 1)],
                "elapsed_seconds": round(elapsed, 3),
                "speed_kmh": round(speed, 1) if speed is not None else None,
                "thresholds": {
                    "min_distance_km": self.settings.min_distance_km,
                    "min_speed_kmh": self.settings.min_speed_kmh,
                },
            },
            policy=policy.for_portal(event.portal, policy.SCHOOLS_PERSONAL_LOGIN, policy.PARENT_OWN_LOGIN),
            portal=event.portal,
        )

    def on_tick(self, watermark: float) -> None:
        """Once per event-time hour: drop the places older than `forget_after` (an hour's margin
        for late events). Only memory changes: such a place no longer counts (`on_event`)."""
        if not math.isfinite(watermark) or not math.isfinite(self.forget_after):
            return None
        hour = int(watermark // 3600)
        if hour == self._swept_hour:
            return None
        self._swept_hour = hour
        cutoff = watermark - self.forget_after - 3600.0
        last = self.last
        stale = [account_id for account_id, place in last.items() if place.at < cutoff]
        for account_id in stale:
            del last[account_id]
        self._forgotten.extend(stale)
        return None

    def snapshot(self) -> Any:
        return self.last

    def restore(self, state: Any) -> None:
        self.last = by_account(msgspec.convert(state, dict[str, LastPlace])) if state else {}
        self._forgotten = []

    def accounts_state(self) -> dict[str, LastPlace]:
        return self.last

    def restore_accounts(self, account_ids: Sequence[str], entries: Any) -> None:
        last = self.last
        for account_id in account_ids:
            last.pop(account_id, None)
        if entries:
            last.update(by_account(msgspec.convert(entries, dict[str, LastPlace])))

    def take_forgotten(self) -> list[str]:
        forgotten, self._forgotten = self._forgotten, []
        return forgotten
