"""Actions for the portal to take: `portal.action/v1` events, one per account the policy says to disable.

The monitor itself never disables anything. When `dormant_account` finds an account past its
dormancy period, its alert carries `evidence.action_required = "disable_account"`; this sink
turns each such alert into an action event, published on the Kafka topic `portal.actions`
(keyed by account_id, so one account's actions stay in order) or, in replay, to a JSONL file.
`action_id` is derived from the alert id, so a redelivered alert gives the same action.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import msgspec

from detectors.dormant_account import dormancy_reason
from monitor.contract.alerts import Alert
from monitor.engine.findings import Findings
from sinks.records import FileRecords, KafkaRecords
from monitor.contract.settings import Section

SCHEMA = "portal.action/v1"
DISABLE_ACCOUNT = "disable_account"


class Action(msgspec.Struct, kw_only=True):
    """`portal.action/v1`."""

    schema: str = SCHEMA
    action_id: str
    action: str
    account_id: str
    portal: str | None
    reason: str
    alert_id: str
    ts: datetime


def action_id(action: str, alert_id: str) -> str:
    return hashlib.sha256(f"{action}\x1f{alert_id}".encode()).hexdigest()[:32]


def action_for(alert: Alert) -> Action | None:
    """The action an alert asks the portal to take, if any."""
    evidence = alert.evidence
    action = evidence.get("action_required")
    if action != DISABLE_ACCOUNT:
        return None
    idle = evidence.get("idle_since")
    return Action(
        action_id=action_id(action, alert.alert_id),
        action=action,
        account_id=alert.account_id,
        portal=alert.portal,
        reason=dormancy_reason(evidence.get("period_days", 0), idle.timestamp() if isinstance(idle, datetime) else 0.0),
        alert_id=alert.alert_id,
        ts=alert.ts,
    )


def pending_action(account_id: str, portal: str | None, reason: str, alert_id: str, ts: datetime) -> Action:
    """The action for an account the registry holds as dormant (what `accounts actions` lists)."""
    return Action(
        action_id=action_id(DISABLE_ACCOUNT, alert_id),
        action=DISABLE_ACCOUNT,
        account_id=account_id,
        portal=portal,
        reason=reason,
        alert_id=alert_id,
        ts=ts,
    )


def actions_in(findings: Findings) -> list[Action]:
    return [action for action in map(action_for, findings.alerts) if action is not None]


class KafkaActions(KafkaRecords):
    """Actions to `portal.actions`, keyed by the account they are about."""

    name = "actions"

    def select(self, findings: Findings) -> list[Action]:
        return actions_in(findings)

    def key(self, action: Action) -> bytes:
        return action.account_id.encode()


class FileActions(FileRecords):
    """Actions as JSON lines to a file (replay): the same events the daemon publishes."""

    name = "actions"

    def select(self, findings: Findings) -> list[Action]:
        return actions_in(findings)


class ActionsSinkSettings(Section):
    """`portal.action/v1` events for the portal to act on (disable a dormant account), on Kafka."""

    enabled: bool = True
    topic: str = "portal.actions"
