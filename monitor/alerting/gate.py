"""Noise control before the sinks: cool-down grouping per (detector, account) and silences.

A pure step, decided in event time only (the alert's `ts`), so replay and live operation group
and silence the same alerts:

- The first alert of a detector for an account opens a group. Further alerts of that detector
  for that account whose event time lies within the detector's cool-down of the first are
  *repeats*: they are not published again; the first alert's count and last-seen time grow
  (in PostgreSQL), and the sessions they flagged point at the first alert. After the
  cool-down the next alert is published and opens a new group.
- A repeat more severe than the group's alert is an escalation: published, and it opens a new
  group.
- An alert matching a silence (every matcher it names: account, detector, network of any IP
  in the evidence; event time in [starts, expires)) is *silenced*: stored for the record with
  status `silenced`, never published, and it opens no group.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Any, Iterable, Mapping

import msgspec

from monitor.contract.alerts import SEVERITY_RANK, Alert
from monitor.engine.findings import Findings
from monitor.contract.settings import Section
from monitor.contract.durations import Seconds
from datetime import datetime

IP_KEYS = frozenset(("ip", "last_ip"))
IP_LIST_KEYS = frozenset(("addresses",))  # brute_force's and password_spray's failing addresses


class Silence(msgspec.Struct, frozen=True, kw_only=True):
    """A silence as the gate applies it; `silence_id` is None for one from the config file."""

    expires: float
    starts: float = float("-inf")
    account_id: str | None = None
    detector: str | None = None
    network: str | None = None
    silence_id: int | None = None
    reason: str = ""

    def matches(self, alert: Alert, at: float, addresses: list) -> bool:
        if not (self.starts <= at < self.expires):
            return False
        if self.account_id is not None and alert.account_id != self.account_id:
            return False
        if self.detector is not None and alert.detector != self.detector:
            return False
        if self.network is not None:
            net = _network(self.network)
            return any(a.version == net.version and a in net for a in addresses)
        return True


class Repeat(msgspec.Struct, kw_only=True):
    """An alert grouped into an earlier one of the same detector and account."""

    repeat_id: str
    alert_id: str
    detector: str
    account_id: str
    severity: str
    ts: Any
    session_ids: list[str]
    summary: str


class GatedFindings(Findings):
    """Findings after the gate: `alerts` are the ones to publish; repeats and silenced aside."""

    __slots__ = ("repeats", "silenced")

    def __init__(self) -> None:
        super().__init__()
        self.repeats: list[Repeat] = []
        self.silenced: list[tuple[Alert, int | None]] = []

    def for_sinks(self) -> bool:
        return super().for_sinks() or bool(self.repeats or self.silenced)


def subject_of(source: str | None) -> str:
    """The group key of an alert about a source (no account): its source, marked as such."""
    return f"source:{source}" if source else ""


class AlertGate:
    """Groups repeats and applies silences, in event time. No I/O, no wall clock."""

    def __init__(
        self,
        cooldown: float,
        cooldowns: Mapping[str, float] | None = None,
        silences: Iterable[Silence] = (),
    ) -> None:
        self.cooldown = float(cooldown)
        self.cooldowns = {k: float(v) for k, v in (cooldowns or {}).items()}
        self.silences: tuple[Silence, ...] = tuple(silences)
        # (detector, account_id or "source:<network>") -> (alert_id, event time, severity rank) of the group's alert
        self._groups: dict[tuple[str, str], tuple[str, float, int]] = {}
        self._newest = float("-inf")
        self._pruned_at = float("-inf")

    def set_silences(self, silences: Iterable[Silence]) -> None:
        self.silences = tuple(silences)

    def cooldown_for(self, detector: str) -> float:
        return self.cooldowns.get(detector, self.cooldown)

    def remember(self, detector: str, account_id: str, alert_id: str, at: float, severity: str) -> None:
        """Seed a group from the store (alerts raised before a restart)."""
        key = (detector, account_id)
        known = self._groups.get(key)
        if known is None or at >= known[1]:
            self._groups[key] = (alert_id, at, SEVERITY_RANK.get(severity, 0))
        self._newest = max(self._newest, at)

    def apply(self, findings: Findings) -> GatedFindings:
        """Split the findings' alerts into published, repeats and silenced."""
        out = GatedFindings()
        out.flagged_sessions = findings.flagged_sessions
        out.viewed_items = findings.viewed_items
        out.dead_letters = findings.dead_letters
        out.pupil_access = findings.pupil_access
        out.login_outcomes = findings.login_outcomes
        if isinstance(findings, GatedFindings):
            out.repeats.extend(findings.repeats)
            out.silenced.extend(findings.silenced)
        if not findings.alerts:
            return out
        groups = self._groups
        renamed: dict[str, str] = {}
        for alert in findings.alerts:
            at = alert.ts.timestamp()
            if at > self._newest:
                self._newest = at
            silence = self._silence_for(alert, at)
            if silence is not None:
                out.silenced.append((alert, silence.silence_id))
                continue
            key = (alert.detector, alert.account_id or subject_of(alert.source))
            rank = SEVERITY_RANK[alert.severity]
            group = groups.get(key)
            if (
                group is not None
                and group[0] != alert.alert_id
                and abs(at - group[1]) < self.cooldown_for(alert.detector)
                and rank <= group[2]
            ):
                out.repeats.append(
                    Repeat(
                        repeat_id=alert.alert_id,
                        alert_id=group[0],
                        detector=alert.detector,
                        account_id=alert.account_id,
                        severity=alert.severity,
                        ts=alert.ts,
                        session_ids=list(alert.session_ids),
                        summary=alert.summary,
                    )
                )
                renamed[alert.alert_id] = group[0]
                continue
            if group is None or group[0] != alert.alert_id:
                groups[key] = (alert.alert_id, at, rank)
            out.alerts.append(alert)
        if renamed:
            for flagged in out.flagged_sessions.values():
                ids = [renamed.get(i, i) for i in flagged.alert_ids]
                flagged.alert_ids = list(dict.fromkeys(ids))
        self._prune()
        return out

    def _silence_for(self, alert: Alert, at: float) -> Silence | None:
        if not self.silences:
            return None
        addresses = None
        for silence in self.silences:
            if silence.network is not None and addresses is None:
                addresses = _addresses(alert.evidence)
            if silence.matches(alert, at, addresses or []):
                return silence
        return None

    def _prune(self) -> None:
        """Forget groups far behind the newest alert, so memory stays bounded."""
        horizon = 2 * self.horizon
        if self._newest - self._pruned_at < horizon:
            return
        self._pruned_at = self._newest
        cutoff = self._newest - horizon
        self._groups = {k: v for k, v in self._groups.items() if v[1] >= cutoff}

    @property
    def horizon(self) -> float:
        """How far back (event time) a group can still absorb repeats."""
        return max([self.cooldown, *self.cooldowns.values()])


@lru_cache(maxsize=1024)
def _network(cidr: str):
    return ipaddress.ip_network(cidr, strict=False)


def _add_address(found: list, value: str) -> None:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    found.append(address)


def _addresses(evidence: Any, depth: int = 0) -> list:
    """Every IP address named `ip` or `last_ip`, or listed under `addresses`, anywhere in the evidence."""
    found: list = []
    if depth > 4:
        return found
    if isinstance(evidence, dict):
        for key, value in evidence.items():
            if key in IP_KEYS and isinstance(value, str):
                _add_address(found, value)
            elif key in IP_LIST_KEYS and isinstance(value, list):
                for item in value:
                    if isinstance(item, str):
                        _add_address(found, item)
            elif isinstance(value, (dict, list)):
                found.extend(_addresses(value, depth + 1))
    elif isinstance(evidence, list):
        for value in evidence:
            found.extend(_addresses(value, depth + 1))
    return found


def silences_from_settings(settings) -> list[Silence]:
    """The silences written in the config file ([[alerting.silences]])."""
    return [
        Silence(
            expires=s.expires.timestamp(),
            starts=s.starts.timestamp() if s.starts else float("-inf"),
            account_id=s.account_id,
            detector=s.detector,
            network=s.network,
            reason=s.reason,
        )
        for s in settings.alerting.silences
    ]


def build_gate(settings) -> AlertGate:
    alerting = settings.alerting
    return AlertGate(alerting.cooldown, alerting.cooldowns, silences_from_settings(settings))


class SilenceSettings(Section):
    """Alerts matching every given field (account, detector, network) raised in [starts, expires) are silenced."""

    expires: datetime
    account_id: str | None = None
    detector: str | None = None
    network: str | None = None
    starts: datetime | None = None
    reason: str = ""


class AlertingSettings(Section):
    """Noise control, in event time: cool-down per (detector, account) and silences."""

    cooldown: Seconds = Seconds(15 * 60)
    """Repeats of a detector for one account within this long of its first alert are grouped into it."""
    cooldowns: dict[str, Seconds] = {}
    """Per-detector cool-downs, e.g. `simultaneous_logins = "30m"`."""
    silences: list[SilenceSettings] = []
    silence_refresh: Seconds = Seconds(30)
    """How often the daemon reloads silences added with `portal-monitor silences add`."""
