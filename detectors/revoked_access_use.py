"""`revoked_access_use`: a successful login or page view on an account whose access was revoked or disabled."""

from __future__ import annotations

import msgspec

from detectors.base import Detector, DetectorContext
from monitor.contract.accounts import newest_restrictions
from monitor.contract import policy
from monitor.contract.settings import Section
from monitor.contract.alerts import Alert, Severity, new_alert, utc
from monitor.contract.events import PortalEvent
from monitor.state.sessions import AccountState

WHAT = {"revoked": "access was revoked", "disabled": "account was disabled"}


class RevokedAccessUseSettings(Section):
    enabled: bool = True
    severity: Severity = "critical"


class Restricted(msgspec.Struct, array_like=True):
    """A revoked or disabled account, and the sessions already alerted on since."""

    status: str
    since: float
    reason: str | None
    alerted_sessions: list[str] = []


class RevokedAccessUse(Detector):
    """Use of an account after `access_revoked` or `account_disabled`, before it was restored or enabled.

    Enforces the Parent Portal Acceptable Use Policy: "Preston School reserves the right to
    revoke or deny access to the Parent Portal of any individual" (parental responsibility
    questioned, a court ruling, child protection concerns, a breach of the policy); and the
    Schools' Portal Site Terms: "Lancashire County Council reserves the right to withdraw
    access to the system, from any end user who is shown to be in breach of these terms and
    conditions." A session on such an account means the revocation did not take, or the
    portal let someone in it should not have: critical, one alert per session.

    State: one small entry per revoked or disabled account (they are few), seeded from the
    account registry when the shard is built and kept current from the lifecycle events.
    """

    id = "revoked_access_use"
    event_types = ("login_succeeded", "page_view", "account_disabled", "account_enabled", "access_revoked", "access_restored")

    def __init__(self, settings: RevokedAccessUseSettings, context: DetectorContext) -> None:
        self.settings = settings
        self.lent = {account_id: r for account_id, r in context.restricted.items() if r.status in WHAT}
        self.restricted: dict[str, Restricted] = {
            account_id: Restricted(r.status, r.since, r.reason, []) for account_id, r in self.lent.items()
        }

    def on_event(self, event: PortalEvent, account: AccountState) -> list[Alert] | None:
        kind = event.type
        if kind == "login_succeeded" or kind == "page_view":
            entry = self.restricted.get(event.account_id)
            if entry is None or event.at < entry.since or event.session_id in entry.alerted_sessions:
                return None
            entry.alerted_sessions.append(event.session_id)  # type: ignore[arg-type]
            return [self._alert(event, entry)]
        if kind == "access_revoked":
            self._restrict(event, "revoked")
        elif kind == "account_disabled":
            self._restrict(event, "disabled")
        else:  # access_restored, account_enabled
            entry = self.restricted.get(event.account_id)
            if entry is not None and event.at >= entry.since:
                del self.restricted[event.account_id]
        return None

    def _restrict(self, event: PortalEvent, status: str) -> None:
        entry = self.restricted.get(event.account_id)
        if entry is None or event.at >= entry.since:
            self.restricted[event.account_id] = Restricted(status, event.at, event.reason, [])

    def _alert(self, event: PortalEvent, entry: Restricted) -> Alert:
        at = event.at
        what = "logged in" if event.type == "login_succeeded" else f"viewed {event.resource}"
        where = f" from {event.ip}" if event.ip else ""
        because = f" ({entry.reason})" if entry.reason else ""
        return new_alert(
            detector=self.id,
            severity=self.settings.severity,
            account_id=event.account_id,
            at=at,
            trigger=f"{entry.since!r}\x1f{event.session_id}",
            session_ids=[event.session_id] if event.session_id else [],
            summary=(
                f"Account {event.account_id} {what}{where} at {utc(at):%Y-%m-%d %H:%M:%S}Z although its "
                f"{WHAT[entry.status]} on {utc(entry.since):%Y-%m-%d %H:%M}Z{because}: the portal let in "
                "an account that must not be used; end the session and check what was seen."
            ),
            evidence={
                "status": entry.status,
                "since": utc(entry.since),
                "reason": entry.reason,
                "event": {
                    "type": event.type,
                    "at": utc(at),
                    "ip": event.ip,
                    "session_id": event.session_id,
                    "resource": event.resource,
                    "user_agent": event.user_agent,
                },
            },
            policy=policy.for_portal(event.portal, policy.SCHOOLS_WITHDRAWAL, policy.PARENT_REVOCATION),
            portal=event.portal,
        )

    def snapshot(self) -> dict[str, Restricted]:
        return self.restricted

    def restore(self, state: object) -> None:
        """Load a checkpoint; a restriction the registry lent that is newer (a roster imported since) stands."""
        self.restricted = newest_restrictions(
            msgspec.convert(state, dict[str, Restricted]),
            self.lent,
            lambda r: Restricted(r.status, r.since, r.reason, []),
        )
