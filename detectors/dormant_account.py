"""`dormant_account`: an account that reached its portal's dormancy period without a successful login.

Unlike the per-event detectors this rule is time-driven over every account, millions of
them, most never in memory: the account registry is swept with a query as the event-time
watermark advances (`monitor.accounts.lifecycle`). This module holds the rule itself, pure:
when an account is due a warning or a dormancy alert, and the alerts' wording.
"""

from __future__ import annotations

from typing import Literal


from monitor.contract import policy
from monitor.contract.accounts import Account, DormancyMark
from monitor.contract.settings import Section
from monitor.contract.alerts import Alert, Severity, new_alert, utc
from monitor.contract.durations import Seconds

DAY = 86400.0
PortalName = Literal["schools", "parent"]
PORTAL_TITLES = {"schools": "Schools' Portal", "parent": "Parent Portal"}
# The classes of accounts swept separately: each portal, and accounts of no known portal.
PORTAL_CLASSES: tuple[str | None, ...] = ("schools", "parent", None)


def dormancy_reason(days: int, idle: float) -> str:
    """Why the account is to be disabled, as the registry and the `disable_account` action say it."""
    return f"no successful login for {days} days (idle since {utc(idle):%Y-%m-%dT%H:%M:%SZ})"


class DormantAccountSettings(Section):
    enabled: bool = True
    period: Seconds = Seconds(180 * DAY)
    """Time without a successful login after which an account is dormant (the Site Terms: 180 days)."""
    periods: dict[PortalName, Seconds] = {}
    """Per-portal overrides of `period`, e.g. {parent = "365d"}; 0 turns the rule off for that portal."""
    warning: Seconds = Seconds(14 * DAY)
    """Early warning this long before the period ends; 0 for none."""
    severity: Severity = "medium"
    warning_severity: Severity = "low"
    sweep_every: Seconds = Seconds(60)
    """Event time between two sweeps of the registry by a shard (alerts carry the exact crossing time)."""
    sweep_limit: int = 2_000
    """Accounts per sweep query; a backlog (a fresh roster import) is worked off a chunk per batch."""


class DormantAccount:
    """An account unused for its portal's dormancy period: warn before, alert at the crossing.

    Enforces the Schools' Portal Site Terms: "If you do not use your Schools' Portal account
    for a period of 180 days we automatically disable your Portal account." The alert states
    the last successful login (or, for an account never used, its creation) and the action the
    terms require, `disable_account`, which the actions sink publishes for the portal to take.
    For Parent Portal accounts it supports the Acceptable Use Policy's "provided for use only
    by persons who are legally responsible for a child currently attending the school": a
    parent account unused for the period is a question for the school.

    One alert per dormancy period: the alert id is derived from the instant the idle clock
    started, so replaying the same events never makes a second one.
    """

    id = "dormant_account"

    def __init__(self, settings: DormantAccountSettings) -> None:
        self.settings = settings

    def period(self, portal: str | None) -> float:
        """The dormancy period for an account of `portal` (0: the rule is off for it)."""
        if portal is not None and portal in self.settings.periods:
            return float(self.settings.periods[portal])  # type: ignore[index]
        return float(self.settings.period)

    def classes(self) -> list[tuple[str | None, float]]:
        """(portal, period) of each class of account to sweep, leaving out those switched off."""
        return [(portal, self.period(portal)) for portal in PORTAL_CLASSES if self.period(portal) > 0]

    def gap_floor(self) -> float:
        """The shortest idle spell any portal can alert on: the shard notes spells this long."""
        floors = [period - min(self.settings.warning, period) for _, period in self.classes()]
        return min(floors) if floors else float("inf")

    def stages(self, idle: float, portal: str | None, *, warned: bool, dormant: bool, now: float, since: float) -> list[str]:
        """What is due at `now` for an account idle since `idle`: "warning", "dormant", both, neither.

        A warning is due once its time has come, unless the account is already dormant and the
        warning's time passed before `since` (the shard's previous sweep, or the start of its
        stream): an account imported long past the period gets the dormancy alert alone.
        """
        period = self.period(portal)
        if period <= 0 or dormant:
            return []
        crossing = idle + period
        due = []
        warning = min(self.settings.warning, period)
        if warning > 0 and not warned:
            warn_at = crossing - warning
            if warn_at <= now and (crossing > now or warn_at > since):
                due.append("warning")
        if crossing <= now:
            due.append("dormant")
        return due

    def alert(self, stage: str, account: Account, idle: float, portal: str | None) -> tuple[Alert, DormancyMark]:
        """The alert for `stage` of the idle spell that began at `idle`, and the registry's note of it."""
        period = self.period(portal)
        crossing = idle + period
        days = round(period / DAY)
        title = PORTAL_TITLES.get(portal or "", "portal")
        if account.last_login_at is not None and account.last_login_at == idle:
            since_text = f"its last successful login on {utc(idle):%Y-%m-%d %H:%M}Z"
        elif account.created_at is not None and account.created_at == idle:
            since_text = f"it was created on {utc(idle):%Y-%m-%d %H:%M}Z, and it has never been used since"
        else:
            since_text = f"{utc(idle):%Y-%m-%d %H:%M}Z ({account.idle_basis.replace('_', ' ')}), with no login since"
        evidence = {
            "idle_since": utc(idle),
            "idle_basis": account.idle_basis,
            "last_login_at": utc(account.last_login_at) if account.last_login_at is not None else None,
            "created_at": utc(account.created_at) if account.created_at is not None else None,
            "period_days": days,
            "dormant_at": utc(crossing),
        }
        clause = policy.for_portal(portal, policy.SCHOOLS_DORMANCY, policy.PARENT_AUTHORISED_USERS)
        if stage == "warning":
            warn_at = crossing - min(self.settings.warning, period)
            left = round((crossing - warn_at) / DAY)
            evidence["stage"] = "warning"
            evidence["days_left"] = left
            alert = new_alert(
                detector=self.id,
                severity=self.settings.warning_severity,
                account_id=account.account_id,
                at=warn_at,
                trigger=f"warning\x1f{idle!r}",
                session_ids=[],
                summary=(
                    f"{title} account {account.account_id} will reach {days} days without a successful login "
                    f"on {utc(crossing):%Y-%m-%d %H:%M}Z, {left} days from now (idle since {since_text}); "
                    "it must then be disabled."
                ),
                evidence=evidence,
                policy=clause,
                portal=portal,
            )
            return alert, DormancyMark(account.account_id, idle, "warned", warn_at, alert.alert_id, "")
        evidence["stage"] = "dormant"
        evidence["action_required"] = "disable_account"
        reason = dormancy_reason(days, idle)
        alert = new_alert(
            detector=self.id,
            severity=self.settings.severity,
            account_id=account.account_id,
            at=crossing,
            trigger=f"{idle!r}",
            session_ids=[],
            summary=(
                f"{title} account {account.account_id} has gone {days} days without a successful login, "
                f"since {since_text}: the policy requires it to be disabled (action disable_account)."
            ),
            evidence=evidence,
            policy=clause,
            portal=portal,
        )
        return alert, DormancyMark(account.account_id, idle, "dormant", crossing, alert.alert_id, reason)
