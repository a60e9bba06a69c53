"""The alert contract `portal.alert/v1`, and how detectors build one.

`alert_id` is a hash of the detector, the account and what triggered the alert, so replaying
or redelivering the same events always yields the same id and the sinks store it once.
"""

from __future__ import annotations

import hashlib
import time
from datetime import datetime, timezone
from typing import Any, Literal

import msgspec

Severity = Literal["low", "medium", "high", "critical"]
"""The one severity type: settings and alerts use it; `SEVERITIES` lists it in rank order."""
SEVERITIES: tuple[str, ...] = Severity.__args__  # type: ignore[attr-defined]
SEVERITY_RANK: dict[str, int] = {name: rank for rank, name in enumerate(SEVERITIES)}


class Alert(msgspec.Struct, kw_only=True):
    """One finding a person can act on: what happened, the evidence, and the rule it breaks."""

    alert_id: str
    detector: str
    severity: str
    account_id: str
    ts: datetime
    detected_at: datetime
    session_ids: list[str]
    summary: str
    evidence: dict[str, Any]
    policy: str
    portal: str | None = None
    source: str | None = None
    """What the alert is about when it is a place rather than (only) an account: the network
    (an IPv4 /24, an IPv6 /64) or the address a password spray came from. A source alert
    (`password_spray`) has an empty `account_id`; its follow-up about one account it got
    into has both."""


def alert_id(detector: str, account_id: str, trigger: str) -> str:
    """Deterministic id: the same detector, account and trigger always give the same id."""
    digest = hashlib.sha256(f"{detector}\x1f{account_id}\x1f{trigger}".encode()).hexdigest()
    return digest[:32]


def utc(at: float) -> datetime:
    """Unix seconds as an aware UTC datetime (alerts and evidence carry RFC 3339 times)."""
    return datetime.fromtimestamp(at, timezone.utc)


def new_alert(
    *,
    detector: str,
    severity: str,
    account_id: str,
    at: float,
    trigger: str,
    session_ids: list[str],
    summary: str,
    evidence: dict[str, Any],
    policy: str,
    portal: str | None = None,
    source: str | None = None,
) -> Alert:
    """Build an alert; `trigger` names what fired it (e.g. the new session's id)."""
    return Alert(
        alert_id=alert_id(detector, account_id, trigger),
        detector=detector,
        severity=severity,
        account_id=account_id,
        ts=utc(at),
        detected_at=datetime.fromtimestamp(time.time(), timezone.utc),
        session_ids=session_ids,
        summary=summary,
        evidence=evidence,
        policy=policy,
        portal=portal,
        source=source,
    )
