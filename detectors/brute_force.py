"""`brute_force`: many failed logins for one account in a short time, from any number of addresses."""

from __future__ import annotations

import math
import struct
from typing import Any, Literal

import msgspec

from detectors.base import Detector, DetectorContext
from monitor.contract import policy
from monitor.contract.alerts import Alert, new_alert, utc
from monitor.contract.durations import Seconds
from monitor.contract.events import PortalEvent
from monitor.state.interning import account_key
from monitor.state.sessions import AccountState

Severity = Literal["low", "medium", "high", "critical"]


class BruteForceSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    enabled: bool = True
    failures: int = 20
    """Failed logins for one account within `window` that make a brute force (Entra's smart
    lockout locks after 10, fail2ban bans an address after 5 in 10 minutes: a person mistyping
    a password does not get near 20)."""
    window: Seconds = Seconds(600)
    severity: Severity = "high"
    severity_guessed: Severity = "critical"
    """A successful login from one of the failing addresses after the alert: the password was guessed."""
    max_addresses: int = 16
    """Failing addresses kept (and shown) per attack; more are counted, not kept."""
    max_tracked: int = 100_000
    """Accounts with recent failures tracked per shard; the least recently failing is dropped
    beyond this (a flood of made-up usernames must not grow memory without bound)."""


class Attempts(msgspec.Struct, array_like=True, gc=False):
    """One account's current run of failures: a burst lasts while failures come less than
    `window` apart."""

    started: float  # first failure of the burst: names the alert
    last: float
    count: int  # failures in the burst
    recent: list[float]  # the latest failures within the window, at most `failures` of them
    addresses: list[str]  # distinct failing addresses, at most `max_addresses`
    more_addresses: int = 0
    alerted: float | None = None  # event time of this burst's alert
    guessed: bool = False


# An account's `Attempts` as the detector holds it: one bytes object of started, last, count,
# more_addresses, alerted (NaN: not yet), guessed and the number of recent failures; then the
# recent failures' times; then the addresses, newline-separated. About 96 bytes for an account
# with one failure where the Struct, its two lists, float and address took about 340: a million
# accounts that mistyped a password once hold 96 MB, not 340. Checkpoints keep `Attempts`.
_HEAD = struct.Struct("<ddIIdBB")
_LAST = struct.Struct("<8xd")  # `last` alone, for the expiry sweep


def _pack(attempts: Attempts) -> bytes:
    recent = attempts.recent
    alerted = attempts.alerted
    return b"".join((
        _HEAD.pack(attempts.started, attempts.last, attempts.count, attempts.more_addresses,
                   math.nan if alerted is None else alerted, attempts.guessed, len(recent)),
        struct.pack(f"<{len(recent)}d", *recent),
        "\n".join(attempts.addresses).encode(),
    ))


def _unpack(packed: bytes) -> Attempts:
    started, last, count, more, alerted, guessed, n = _HEAD.unpack_from(packed)
    end = _HEAD.size + 8 * n
    text = packed[end:].decode()
    return Attempts(
        started=started, last=last, count=count, recent=list(struct.unpack_from(f"<{n}d", packed, _HEAD.size)),
        addresses=text.split("\n") if text else [], more_addresses=more,
        alerted=None if math.isnan(alerted) else alerted, guessed=bool(guessed),
    )


class BruteForce(Detector):
    """Many failed logins for one account within minutes: someone guessing its password.

    The account is the username tried (`account_id` of `login_failed`), from any number of
    addresses; `failures` (20) within `window` (10 minutes) alert, once per burst (a burst
    ends after `window` without a failure). Two to four typos and then the right password
    never come near. A successful login afterwards from one of the failing addresses is a
    second, critical alert: the password was guessed.

    Enforces the Schools' Portal Site Terms: "The Schools' Portal is a secure site. Only
    registered users with valid passwords can access the entire system." and "To prevent
    unauthorised access to the system"; and the Parent Portal Acceptable Use Policy, whose
    first named risk is "The intentional or unintentional disclosure of login details to
    Parent Portal by authorised users."
    """

    id = "brute_force"
    event_types = ("login_failed", "login_succeeded")

    def __init__(self, settings: BruteForceSettings, context: DetectorContext) -> None:
        self.settings = settings
        # Insertion order = order of the latest failure (an update moves the account to the end),
        # so expiry and eviction take from the front. Packed (`_pack`), keyed by the account id's
        # shared copy (the session table's).
        self.attempts: dict[str, bytes] = {}

    def on_event(self, event: PortalEvent, account: AccountState) -> list[Alert] | None:
        if event.type == "login_failed":
            return self._failed(event, account)
        packed = self.attempts.get(event.account_id)
        if packed is None:
            return None
        attempts = _unpack(packed)
        if attempts.alerted is None or attempts.guessed:
            return None
        if event.ip not in attempts.addresses or event.at - attempts.last > self.settings.window:
            return None
        attempts.guessed = True
        self.attempts[event.account_id] = _pack(attempts)  # in place: the order stays the failures'
        return [self._guessed(event, attempts)]

    def _failed(self, event: PortalEvent, account: AccountState) -> list[Alert] | None:
        s = self.settings
        at = event.at
        table = self.attempts
        packed = table.pop(event.account_id, None)
        attempts = None if packed is None else _unpack(packed)
        if attempts is None or at - attempts.last > s.window:
            attempts = Attempts(started=at, last=at, count=0, recent=[], addresses=[])
        table[account.account_id] = b""  # its place in the order now; the entry is packed below
        if len(table) > s.max_tracked:
            del table[next(iter(table))]
        alerts = self._count(event, attempts)
        table[account.account_id] = _pack(attempts)
        return alerts

    def _count(self, event: PortalEvent, attempts: Attempts) -> list[Alert] | None:
        """Count one failure into the account's burst; the alert when it makes one."""
        s = self.settings
        at = event.at
        attempts.count += 1
        if at > attempts.last:
            attempts.last = at
        recent = attempts.recent
        recent.append(at)
        if len(recent) > 1 and at < recent[-2]:
            recent.sort()  # a late failure within the allowed lateness
        horizon = recent[-1] - s.window
        drop = 0
        while recent[drop] < horizon:
            drop += 1
        if drop or len(recent) > s.failures:
            del recent[: max(drop, len(recent) - s.failures)]
        ip = event.ip
        if ip is not None and ip not in attempts.addresses:
            if len(attempts.addresses) < s.max_addresses:
                attempts.addresses.append(ip)
            else:
                attempts.more_addresses += 1
        if attempts.alerted is not None or len(recent) < s.failures:
            return None
        attempts.alerted = at
        return [self._alert(event, attempts)]

    def _alert(self, event: PortalEvent, attempts: Attempts) -> Alert:
        s = self.settings
        recent = attempts.recent
        span = recent[-1] - recent[0]
        places = len(attempts.addresses) + attempts.more_addresses
        summary = (
            f"{len(recent)} failed logins for account {event.account_id} within {_minutes(span)} "
            f"(from {utc(recent[0]):%Y-%m-%d %H:%M:%S}Z), from {places} address(es): "
            f"someone is guessing its password."
        )
        return new_alert(
            detector=self.id,
            severity=s.severity,
            account_id=event.account_id,
            at=event.at,
            trigger=f"burst:{attempts.started!r}",
            session_ids=[],
            summary=summary,
            evidence=self._evidence(attempts),
            policy=_clause(event.portal),
            portal=event.portal,
        )

    def _guessed(self, event: PortalEvent, attempts: Attempts) -> Alert:
        summary = (
            f"Account {event.account_id} logged in from {event.ip} at {utc(event.at):%Y-%m-%d %H:%M:%S}Z, "
            f"an address that had just failed to log in to it ({attempts.count} failures since "
            f"{utc(attempts.started):%H:%M:%S}Z): the password was guessed."
        )
        return new_alert(
            detector=self.id,
            severity=self.settings.severity_guessed,
            account_id=event.account_id,
            at=event.at,
            trigger=f"guessed:{event.session_id}",
            session_ids=[event.session_id] if event.session_id else [],
            summary=summary,
            evidence={**self._evidence(attempts), "login": {"ip": event.ip, "session_id": event.session_id, "at": utc(event.at), "user_agent": event.user_agent}},
            policy=_clause(event.portal),
            portal=event.portal,
        )

    def _evidence(self, attempts: Attempts) -> dict[str, Any]:
        return {
            "failures": attempts.count,
            "failures_in_window": len(attempts.recent),
            "window_seconds": float(self.settings.window),
            "first_failure": utc(attempts.started),
            "last_failure": utc(attempts.last),
            "addresses": list(attempts.addresses),
            "more_addresses": attempts.more_addresses,
        }

    def on_tick(self, watermark: float) -> None:
        """Forget bursts that ended (no failure within `window` before the watermark)."""
        table = self.attempts
        if not table:
            return None
        horizon = watermark - self.settings.window
        for account_id in list(_expired_prefix(table, horizon)):
            del table[account_id]
        return None

    def snapshot(self) -> Any:
        return [(account_id, _unpack(packed)) for account_id, packed in self.attempts.items()] or None

    def restore(self, state: Any) -> None:
        saved = msgspec.convert(state, list[tuple[str, Attempts]]) if state else []
        self.attempts = {account_key(account_id): _pack(attempts) for account_id, attempts in saved}


def _expired_prefix(table: dict[str, bytes], horizon: float):
    last = _LAST.unpack_from
    for account_id, packed in table.items():
        if last(packed)[0] >= horizon:
            return
        yield account_id


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} minutes" if seconds >= 60 else f"{seconds:.0f} s"


def _clause(portal: str | None) -> str:
    return policy.for_portal(
        portal,
        f"{policy.SCHOOLS_SECURE_SITE} {policy.SCHOOLS_UNAUTHORISED_ACCESS}",
        policy.PARENT_LOGIN_DISCLOSURE,
    )
