"""`simultaneous_logins`: one account logged in twice at once, from two different networks."""

from __future__ import annotations

from detectors.base import Detector, DetectorContext
from monitor.contract import policy
from monitor.contract.settings import Section
from monitor.contract.alerts import Alert, Severity, new_alert, utc
from monitor.contract.events import PortalEvent
from monitor.state.sessions import AccountState, Session


class SimultaneousLoginsSettings(Section):
    enabled: bool = True
    alert_same_network: bool = False
    """Also alert on a second live session from the same /24 or /64 (a shared family PC)."""
    same_device_is_handover: bool = True
    """A new login from the same device id is a network switch (Wi-Fi to mobile), not sharing."""
    severity: Severity = "high"
    severity_three_or_more: Severity = "critical"


class SimultaneousLogins(Detector):
    """A successful login while another session of the same account is still open elsewhere.

    Enforces the Schools' Portal Site Terms: "This log will be monitored closely to check for
    multiple, simultaneous logins." and "An end user must only use login details which have
    been issued to them for their personal use."; and the Parent Portal Acceptable Use Policy:
    "You must never use anyone else's username or password".

    "Elsewhere" means a different IPv4 /24 or IPv6 /64. Sessions closed by logout, by the
    portal's expiry or by the idle timeout before the new login do not count; allowlisted
    networks (school and council NATs) never count as different; a new login from the same
    device id is a handover between networks, not a second person.

    Shared networks: this rule compares networks, not places. An allowlisted network never
    counts, on either side: an organisation's NAT pool spans several /24s, and a head teacher's
    idle session at school while logging in at County Hall is one person. A network learnt as
    shared (`networks.shared`) is compared like any other: a live session at the school's
    address and a second from another network are still two sessions at once. So a live
    allowlisted session and a login from abroad are not this rule's alert; `impossible_travel`
    raises it, since an organisation's network is a place there.
    """

    id = "simultaneous_logins"
    event_types = ("login_succeeded",)

    def __init__(self, settings: SimultaneousLoginsSettings, context: DetectorContext) -> None:
        self.settings = settings
        self.table = context.sessions

    def on_event(self, event: PortalEvent, account: AccountState) -> list[Alert] | None:
        sessions = account.sessions
        if len(sessions) < 2:
            return None
        new = sessions.get(event.session_id)  # type: ignore[arg-type]
        if new is None or new.allowlisted:
            return None
        at = event.at
        idle, longest = self.table.idle_timeout, self.table.max_duration
        others = [
            other
            for other in sessions.values()
            if other is not new
            and other.opened_at <= at
            and other.is_open_at(at, idle, longest)
            and self._counts(new, other)
        ]
        if not others:
            return None
        networks = {new.network} | {other.network for other in others}
        severity = self.settings.severity_three_or_more if len(networks) >= 3 else self.settings.severity
        first = others[0]
        where = "the same network" if first.network == new.network else f"{first.ip} ({first.network})"
        more = f" and {len(others) - 1} other live session(s)" if len(others) > 1 else ""
        summary = (
            f"Account {event.account_id} logged in from {new.ip} ({new.network}) at "
            f"{utc(at):%Y-%m-%d %H:%M:%S}Z while its session {first.session_id} from {where}{more} "
            f"was still live (last active {utc(first.last_activity):%H:%M:%S}Z): a shared or stolen login."
        )
        return [
            new_alert(
                detector=self.id,
                severity=severity,
                account_id=event.account_id,
                at=at,
                trigger=new.session_id,
                session_ids=[new.session_id] + [other.session_id for other in others],
                summary=summary,
                evidence={
                    "new_session": _describe(new),
                    "live_sessions": [_describe(other) for other in others],
                    "distinct_networks": len(networks),
                },
                policy=policy.for_portal(
                    event.portal,
                    f"{policy.SCHOOLS_SIMULTANEOUS_LOGINS} {policy.SCHOOLS_PERSONAL_LOGIN}",
                    policy.PARENT_OWN_LOGIN,
                ),
                portal=event.portal,
            )
        ]

    def _counts(self, new: Session, other: Session) -> bool:
        if other.allowlisted or other.network is None:
            return False
        if self.settings.same_device_is_handover and new.device_id and new.device_id == other.device_id:
            return False
        return other.network != new.network or self.settings.alert_same_network


def _describe(session: Session) -> dict[str, object]:
    return {
        "session_id": session.session_id,
        "ip": session.ip,
        "network": session.network,
        "user_agent": session.user_agent,
        "device_id": session.device_id,
        "opened_at": utc(session.opened_at),
        "last_activity": utc(session.last_activity),
        "page_views": session.page_views,
    }
