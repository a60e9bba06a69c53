"""`dormant_account_login`: a login attempt on a dormant account, or on one disabled for dormancy.

Two halves, one rule. A login attempt that ends an idle spell of the dormancy period or more
is found against the account registry (`monitor.accounts.lifecycle` calls `idle_login_alert`,
since the last login of millions of accounts is not kept in memory). A login attempt on an
account the portal disabled for dormancy is found here, in the shard, from the lifecycle
events and the disabled accounts the registry lent the shard at start (few).
"""

from __future__ import annotations

import msgspec

from detectors.base import Detector, DetectorContext
from monitor.contract import policy
from monitor.contract.accounts import LoginAttempt, newest_restrictions
from monitor.contract.settings import Section
from monitor.contract.alerts import Alert, Severity, new_alert, utc
from monitor.contract.events import PortalEvent
from monitor.state.sessions import AccountState

DAY = 86400.0


class DormantAccountLoginSettings(Section):
    enabled: bool = True
    severity: Severity = "high"
    dormancy_reasons: list[str] = msgspec.field(
        default_factory=lambda: ["dormant", "dormancy", "inactive", "inactivity", "unused"]
    )
    """An `account_disabled` whose reason contains one of these words (any case) was disabled for dormancy."""


class DisabledForDormancy(msgspec.Struct, array_like=True):
    since: float
    reason: str | None
    idle_since: float | None
    alerted: bool = False


def _clause(portal: str | None) -> str:
    return policy.for_portal(portal, policy.SCHOOLS_DORMANCY, policy.PARENT_AUTHORISED_USERS)


def _attempt_text(succeeded: bool) -> str:
    return "Successful login" if succeeded else "Failed login attempt"


def idle_login_alert(
    *,
    account_id: str,
    portal: str | None,
    attempt: LoginAttempt,
    idle_since: float,
    idle_basis: str,
    period: float,
    severity: str,
) -> Alert:
    """The alert for a login attempt `attempt.at - idle_since` seconds into an idle spell (>= period)."""
    idle_days = (attempt.at - idle_since) / DAY
    since = "last successful login" if idle_basis == "last_login" else idle_basis.replace("_", " ")
    where = f" from {attempt.ip}" if attempt.ip else ""
    return new_alert(
        detector=DormantAccountLogin.id,
        severity=severity,
        account_id=account_id,
        at=attempt.at,
        trigger=f"{idle_since!r}",
        session_ids=[attempt.session_id] if attempt.succeeded and attempt.session_id else [],
        summary=(
            f"{_attempt_text(attempt.succeeded)} on dormant account {account_id}{where} at "
            f"{utc(attempt.at):%Y-%m-%d %H:%M:%S}Z after {idle_days:.0f} days idle ({since} "
            f"{utc(idle_since):%Y-%m-%d %H:%M}Z): an account unused for {period / DAY:.0f} days "
            "should have been disabled; check who is using it."
        ),
        evidence={
            "idle_days": round(idle_days, 1),
            "idle_since": utc(idle_since),
            "idle_basis": idle_basis,
            "period_days": round(period / DAY),
            "attempt": {
                "at": utc(attempt.at),
                "outcome": "succeeded" if attempt.succeeded else "failed",
                "ip": attempt.ip,
                "session_id": attempt.session_id,
            },
        },
        policy=_clause(portal),
        portal=portal,
    )


class DormantAccountLogin(Detector):
    """A login attempt, successful or not, on an account the portal disabled for dormancy.

    Enforces the Schools' Portal Site Terms: "If you do not use your Schools' Portal account
    for a period of 180 days we automatically disable your Portal account." Someone trying a
    lapsed account is trying an account its owner no longer uses. One alert per disabled
    spell; a successful login there is also `revoked_access_use` (critical).
    """

    id = "dormant_account_login"
    event_types = ("login_succeeded", "login_failed", "account_disabled", "account_enabled", "access_revoked", "access_restored")

    def __init__(self, settings: DormantAccountLoginSettings, context: DetectorContext) -> None:
        self.settings = settings
        self.words = tuple(word.lower() for word in settings.dormancy_reasons)
        self.lent = {
            account_id: r for account_id, r in context.restricted.items()
            if r.status == "disabled" and self.for_dormancy(r.reason)
        }
        self.disabled: dict[str, DisabledForDormancy] = {
            account_id: DisabledForDormancy(r.since, r.reason, r.idle_since) for account_id, r in self.lent.items()
        }

    def for_dormancy(self, reason: str | None) -> bool:
        text = (reason or "").lower()
        return any(word in text for word in self.words)

    def on_event(self, event: PortalEvent, account: AccountState) -> list[Alert] | None:
        kind = event.type
        if kind == "login_succeeded" or kind == "login_failed":
            entry = self.disabled.get(event.account_id)
            if entry is None or entry.alerted or event.at < entry.since:
                return None
            entry.alerted = True
            return [self._alert(event, entry, kind == "login_succeeded")]
        if kind == "account_disabled" and self.for_dormancy(event.reason):
            if event.account_id not in self.disabled:
                self.disabled[event.account_id] = DisabledForDormancy(event.at, event.reason, None)
        else:
            self.disabled.pop(event.account_id, None)
        return None

    def _alert(self, event: PortalEvent, entry: DisabledForDormancy, succeeded: bool) -> Alert:
        at = event.at
        days_disabled = (at - entry.since) / DAY
        evidence: dict[str, object] = {
            "disabled_at": utc(entry.since),
            "disabled_reason": entry.reason,
            "days_disabled": round(days_disabled, 1),
            "attempt": {
                "at": utc(at),
                "outcome": "succeeded" if succeeded else "failed",
                "ip": event.ip,
                "session_id": event.session_id,
            },
        }
        if entry.idle_since is not None:
            idle_days = (at - entry.idle_since) / DAY
            evidence["idle_days"] = round(idle_days, 1)
            evidence["idle_since"] = utc(entry.idle_since)
            idle = f"{idle_days:.0f} days without a successful login"
        else:
            idle = "its last successful login is not on the monitor's record"
        where = f" from {event.ip}" if event.ip else ""
        because = f" ({entry.reason})" if entry.reason else ""
        return new_alert(
            detector=self.id,
            severity=self.settings.severity,
            account_id=event.account_id,
            at=at,
            trigger=f"disabled\x1f{entry.since!r}",
            session_ids=[event.session_id] if succeeded and event.session_id else [],
            summary=(
                f"{_attempt_text(succeeded)} on account {event.account_id}{where} at {utc(at):%Y-%m-%d %H:%M:%S}Z, "
                f"which was disabled for dormancy at {utc(entry.since):%Y-%m-%d %H:%M}Z{because}; {idle}: "
                "someone is trying a lapsed account."
            ),
            evidence=evidence,
            policy=_clause(event.portal),
            portal=event.portal,
        )

    def snapshot(self) -> dict[str, DisabledForDormancy]:
        return self.disabled

    def restore(self, state: object) -> None:
        """Load a checkpoint; a disabling the registry lent that is newer (a roster imported since) stands."""
        self.disabled = newest_restrictions(
            msgspec.convert(state, dict[str, DisabledForDormancy]),
            self.lent,
            lambda r: DisabledForDormancy(r.since, r.reason, r.idle_since),
        )
