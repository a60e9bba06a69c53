"""`session_left_open`: a member of staff who keeps leaving Schools' Portal sessions without logging out."""

from __future__ import annotations

from typing import Any, Literal, Sequence

import msgspec

from detectors._places import duration
from detectors.base import Detector, DetectorContext
from monitor.contract import policy
from monitor.contract.alerts import Alert, new_alert, utc
from monitor.contract.durations import Seconds
from monitor.state.sessions import Session

Severity = Literal["low", "medium", "high", "critical"]

# How a session ends without a logout that this clause is about: the portal's own expiry, or the
# monitor's idle timeout. A session cut at the maximum duration was in use to the end.
LEFT_OPEN: frozenset[str] = frozenset(("idle_timeout", "session_expired"))
MAX_SESSIONS = 100
DAY = 86_400.0


class SessionLeftOpenSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    enabled: bool = True
    sessions: int = 5
    """Sessions left without logging out, within `period`, that make one alert (1 to 100)."""
    period: Seconds = Seconds(7 * DAY)
    """The window they must fall in; also how long the account is not alerted on again after."""
    severity: Severity = "low"

    def __post_init__(self) -> None:
        if not 1 <= self.sessions <= MAX_SESSIONS:
            raise ValueError(f"detectors.session_left_open.sessions: must be between 1 and {MAX_SESSIONS}")
        if float(self.period) <= 0:
            raise ValueError("detectors.session_left_open.period: must be positive")


class LeftOpen(msgspec.Struct, array_like=True, gc=False):
    """One session the account left without logging out."""

    session_id: str
    opened_at: float
    ended_at: float
    ended_by: str  # "idle_timeout" or "session_expired"
    ip: str | None
    page_views: int


class Streak(msgspec.Struct, array_like=True, gc=False):
    """An account's sessions left open within the last `period` (fewer than `sessions` of them),
    and until when it is not alerted on again (the week after an alert)."""

    sessions: list[LeftOpen]
    quiet_until: float = 0.0


class SessionLeftOpen(Detector):
    """A member of staff who leaves `sessions` (default 5) Schools' Portal sessions in `period`
    (default 7 days) without logging out: each ended by the portal's `session_expired` or by
    the monitor's idle timeout, never by a logout.

    Enforces the Schools' Portal Site Terms: "To prevent unauthorised access to the system, do
    not leave your PC logged on and unattended." and "Always log out of the Schools Portal when
    you have completed your tasks." A session left open on a PC in a staffroom or a classroom is
    one anyone passing can use. One forgotten logout is ordinary; a habit is what the portal
    team wants to hear about, so one alert (low) per account for that week, listing the
    sessions, then nothing for `period` after it.

    Only Schools' Portal sessions (`portal` "schools"): the Parent Portal's users are not bound
    by that clause, and a session whose portal is unknown is not judged. Sessions cut at the
    maximum duration were in use to the end and do not count. In event time: the engine hands
    over the sessions that ended after each expiry sweep (`Detector.on_sessions_ended`) and they
    are taken in order of when they ended, so replay and live raise the same alert. Every such
    session, staff or parent, is also counted in `portal_monitor_sessions_left_open_total` by
    the engine, so the trend shows without any alert.

    State: per account with a recent session left open, at most `sessions - 1` short records
    (or none, during the quiet week after an alert); accounts are forgotten once their records
    are older than `period`.
    """

    id = "session_left_open"
    event_types = ()

    def __init__(self, settings: SessionLeftOpenSettings, context: DetectorContext) -> None:
        self.settings = settings
        self.idle_timeout = float(context.sessions.idle_timeout)
        self.accounts: dict[str, Streak] = {}
        self._prune_at = 0.0
        self._forgotten: list[str] = []

    def on_sessions_ended(self, sessions: Sequence[Session]) -> list[Alert] | None:
        staff = [s for s in sessions if s.portal == "schools" and s.close_reason in LEFT_OPEN]
        if not staff:
            return None
        staff.sort(key=lambda s: (s.closed_at, s.account_id, s.session_id))
        period = float(self.settings.period)
        threshold = self.settings.sessions
        accounts = self.accounts
        alerts: list[Alert] | None = None
        for session in staff:
            ended_at: float = session.closed_at  # type: ignore[assignment]
            streak = accounts.get(session.account_id)
            if streak is None:
                streak = accounts[session.account_id] = Streak([])
            elif ended_at < streak.quiet_until:
                continue  # alerted on for this week already: counted, not alerted again
            since = ended_at - period
            # A session the monitor expired and a later page view took up again is one session:
            # its first idle spell is replaced by the later one, not counted twice.
            kept = [left for left in streak.sessions if left.ended_at > since and left.session_id != session.session_id]
            kept.append(
                LeftOpen(
                    session.session_id, session.opened_at, ended_at, session.close_reason or "",
                    session.last_ip or session.ip, session.page_views,
                )
            )
            if len(kept) >= threshold:
                if alerts is None:
                    alerts = []
                alerts.append(self._alert(session, kept))
                streak.sessions = []
                streak.quiet_until = ended_at + period
            else:
                streak.sessions = kept
        latest: float = staff[-1].closed_at  # type: ignore[assignment]
        if latest >= self._prune_at:
            self._prune(latest - period)
            self._prune_at = latest + DAY
        return alerts

    def _prune(self, before: float) -> None:
        """Forget accounts with nothing left open since `before` and no quiet week running."""
        stale = [
            account_id
            for account_id, streak in self.accounts.items()
            if streak.quiet_until <= before + float(self.settings.period)
            and all(left.ended_at <= before for left in streak.sessions)
        ]
        for account_id in stale:
            del self.accounts[account_id]
        self._forgotten.extend(stale)

    def _alert(self, session: Session, left: list[LeftOpen]) -> Alert:
        first, last = left[0], left[-1]
        idle = duration(self.idle_timeout)
        summary = (
            f"Account {session.account_id} left {len(left)} Schools' Portal sessions without logging out "
            f"between {utc(first.opened_at):%Y-%m-%d %H:%M}Z and {utc(last.ended_at):%Y-%m-%d %H:%M}Z "
            f"(each ended by the portal's expiry or after {idle} idle): a PC left logged on is one "
            f"anyone can use."
        )
        return new_alert(
            detector=self.id,
            severity=self.settings.severity,
            account_id=session.account_id,
            at=last.ended_at,
            trigger=last.session_id,
            session_ids=[item.session_id for item in left],
            summary=summary,
            evidence={
                "sessions": [
                    {
                        "session_id": item.session_id,
                        "ip": item.ip,
                        "opened_at": utc(item.opened_at),
                        "ended_at": utc(item.ended_at),
                        "ended_by": item.ended_by,
                        "page_views": item.page_views,
                    }
                    for item in left
                ],
                "thresholds": {
                    "sessions": self.settings.sessions,
                    "period_seconds": float(self.settings.period),
                    "idle_timeout_seconds": self.idle_timeout,
                },
            },
            policy=policy.SCHOOLS_LOG_OUT,
            portal="schools",
        )

    def snapshot(self) -> Any:
        return self.accounts or None

    def restore(self, state: Any) -> None:
        """Load a checkpoint: the streaks by account (or, as written before incremental
        checkpoints, {"accounts": streaks, "prune_at": time}). When to prune next is not kept:
        pruning drops only what can no longer count, so doing it early changes no alert."""
        self._prune_at, self._forgotten = 0.0, []
        if state and isinstance(state.get("accounts"), dict) and isinstance(state.get("prune_at"), (int, float)):
            state = state["accounts"]
        self.accounts = msgspec.convert(state, dict[str, Streak]) if state else {}

    def accounts_state(self) -> dict[str, Streak]:
        return self.accounts

    def restore_accounts(self, account_ids: Sequence[str], entries: Any) -> None:
        accounts = self.accounts
        for account_id in account_ids:
            accounts.pop(account_id, None)
        if entries:
            accounts.update(msgspec.convert(entries, dict[str, Streak]))

    def take_forgotten(self) -> list[str]:
        forgotten, self._forgotten = self._forgotten, []
        return forgotten
