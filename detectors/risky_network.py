"""`risky_network`: a login from a Tor exit, an anonymous VPN or proxy, a hosting provider or a public network."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from detectors._places import place_evidence, where
from detectors.base import IP_CHANGED, Detector, DetectorContext
from monitor.contract import policy
from monitor.contract.settings import Section
from monitor.contract.alerts import Alert, new_alert, utc
from monitor.contract.events import PortalEvent
from monitor.places.risky import KIND_TEXT
from monitor.state.sessions import AccountState

SeverityOrOff = Literal["off", "low", "medium", "high", "critical"]


class RiskSeverities(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Severity per kind of network; "off" stops alerts for that kind."""

    tor: SeverityOrOff = "high"
    vpn: SeverityOrOff = "medium"
    proxy: SeverityOrOff = "medium"
    hosting: SeverityOrOff = "low"
    public: SeverityOrOff = "medium"


class RiskyNetworkSettings(Section):
    enabled: bool = True
    severity: RiskSeverities = msgspec.field(default_factory=RiskSeverities)


class RiskyNetwork(Detector):
    """A login (or a session switching address) from a network where the portal's information
    is at risk: a Tor exit node, an anonymous VPN or proxy, a hosting provider, or a public
    network the portal team listed (internet cafés, libraries, open Wi-Fi).

    Enforces the Parent Portal Acceptable Use Policy: "You should not attempt to access the
    Parent and carers Portal system in any environment where the security of the information
    contained in the Parent Portal may be placed at risk e.g. a cybercafé"; and the Schools'
    Portal Site Terms: "As an end user it is your responsibility to ensure the security of the
    system and confidentiality of data."

    Matches come from the `[[networks.risky]]` lists (reloaded on SIGHUP) and, when
    configured, the GeoIP2 Anonymous IP database; the alert names the list that matched.
    Allowlisted networks never alert.
    """

    id = "risky_network"
    event_types = ("login_succeeded", IP_CHANGED)

    def __init__(self, settings: RiskyNetworkSettings, context: DetectorContext) -> None:
        self.settings = settings
        self.geo = context.geo
        self.networks = context.networks

    def on_event(self, event: PortalEvent, account: AccountState) -> list[Alert] | None:
        ip = event.ip
        geo = self.geo
        if ip is None or geo is None:
            return None
        session = account.sessions.get(event.session_id)  # type: ignore[arg-type]
        if session is None:
            return None
        location = session.location
        match = geo.risky.match(ip, location)
        if match is None:
            return None
        severity = getattr(self.settings.severity, match.kind)
        if severity == "off":
            return None
        info = self.networks.lookup(ip)
        if info is None or info.allowlisted:
            return None
        at = event.at
        verb = "logged in" if event.type == "login_succeeded" else f"continued session {session.session_id}"
        summary = (
            f"Account {event.account_id} {verb} from {where(location, ip)} at {utc(at):%Y-%m-%d %H:%M}Z, "
            f"which the list '{match.list_name}' names as {KIND_TEXT[match.kind]} ({match.entry}): "
            f"a place where the security of the portal's information is at risk."
        )
        return [
            new_alert(
                detector=self.id,
                severity=severity,
                account_id=event.account_id,
                at=at,
                trigger=event.event_id,
                session_ids=[session.session_id],
                summary=summary,
                evidence={
                    "list": match.list_name,
                    "kind": match.kind,
                    "matched": match.entry,
                    "place": place_evidence(location, ip, at, session.session_id),
                },
                policy=policy.for_portal(event.portal, policy.SCHOOLS_SECURITY, policy.PARENT_INSECURE_PLACES),
                portal=event.portal,
            )
        ]

    def snapshot(self) -> Any:
        return None
