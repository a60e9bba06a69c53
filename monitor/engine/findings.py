"""What the engine hands downstream: a batch's findings and the clocks they were found by.

Everything after the shards (the alert gate, delivery, the sinks, the account lifecycle)
reads these types and nothing else of the engine. They carry a whole `Session` (a flagged
session's timeline), so they live at the top of the engine rather than in `monitor.contract`.
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from monitor.contract.accounts import AccountActivity, DormancyMark, StatusChange
from monitor.contract.alerts import Alert
from monitor.contract.events import PortalEvent
from monitor.ingest.decode import Rejection, bounded_raw
from monitor.contract.outcomes import LoginOutcome
from monitor.state.sessions import Session

NO_WATERMARK = float("-inf")


class ShardClock(NamedTuple):
    """A shard's event-time clock as it stood when a batch was run: what the dormancy sweep
    reads. Taken then, not read later, because the next batch may already be running while
    this one is delivered (`monitor.service.lifecycle`)."""

    partition: int
    watermark: float


class DeadLetter(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A rejected record, with where it came from and why, kept for inspection.

    A record longer than `monitor.ingest.decode.DEAD_LETTER_RAW_LIMIT` bytes (64 KiB) is cut; then
    `raw_length` is its length in bytes and `raw_sha256` the hex SHA-256 of all its bytes,
    so the original can be found in the source and checked.
    """

    reason: str
    detail: str
    partition: int
    offset: int
    raw: str
    raw_length: int | None = None
    raw_sha256: str | None = None


def dead_letter(rejection: Rejection, partition: int, offset: int, raw: bytes | str | None) -> DeadLetter:
    """The dead letter of one rejected record, its raw text cut to `DEAD_LETTER_RAW_LIMIT`."""
    text, length, digest = bounded_raw(raw)
    return DeadLetter(
        reason=rejection.reason, detail=rejection.detail[:1024], partition=partition, offset=offset, raw=text,
        raw_length=length, raw_sha256=digest,
    )


class FlaggedSession(msgspec.Struct, kw_only=True):
    """A session named by an alert, as stored for incident responders."""

    session: Session
    alert_ids: list[str]


class ViewedItemRecord(msgspec.Struct, array_like=True):
    """A page view in a flagged session, after the flag: the rest of its timeline."""

    session_id: str
    account_id: str
    at: float
    resource: str
    action: str
    ip: str | None


ACCESS_ACTIONS: tuple[str, ...] = ("view", "download", "print", "export")
"""What a view of a pupil's record may do; the access log counts each (`Findings.pupil_access`)."""


class Findings:
    """What one batch produced for the sinks, and for the account registry.

    `account_activity` is the batch's per-account aggregate (one entry per account, updated in
    place per event), `account_changes` its lifecycle events, `dormancy_marks` what the
    registry must note once the batch's dormancy alerts were delivered. `login_outcomes`: the
    batch's login attempts for the network stage (when a source detector runs).
    """

    __slots__ = (
        "alerts", "flagged_sessions", "viewed_items", "dead_letters",
        "account_activity", "account_changes", "dormancy_marks", "pupil_access", "login_outcomes",
    )

    def __init__(self) -> None:
        self.alerts: list[Alert] = []
        self.flagged_sessions: dict[str, FlaggedSession] = {}
        self.viewed_items: list[ViewedItemRecord] = []
        self.dead_letters: list[DeadLetter] = []
        self.account_activity: dict[str, AccountActivity] = {}
        self.account_changes: list[StatusChange] = []
        self.dormancy_marks: list[DormancyMark] = []
        # The batch's access log of pupils' records ([pupils] access_log): its page views that
        # name a pupil, the events themselves, in the order they ran. The store folds them into
        # one row per pupil, day and account (`sinks.postgres.UPSERT_PUPIL_ACCESS`): one list
        # append per view here, where a fold in Python cost about 2,600 instructions a view.
        self.pupil_access: list[PortalEvent] = []
        self.login_outcomes: list[LoginOutcome] = []

    def for_sinks(self) -> bool:
        """Anything a sink writes (login outcomes included: the `login_outcomes` sink publishes
        them): the one answer to "is there something to deliver?"."""
        return bool(
            self.alerts or self.flagged_sessions or self.viewed_items or self.dead_letters or self.pupil_access
            or self.login_outcomes
        )

    def __bool__(self) -> bool:
        """Anything at all: for the sinks or for the account registry."""
        return self.for_sinks() or bool(self.account_activity or self.account_changes or self.dormancy_marks)

    def extend(self, other: "Findings") -> None:
        self.alerts.extend(other.alerts)
        self.flagged_sessions.update(other.flagged_sessions)
        self.viewed_items.extend(other.viewed_items)
        self.dead_letters.extend(other.dead_letters)
        activity = self.account_activity
        for account_id, later in other.account_activity.items():
            mine = activity.get(account_id)
            if mine is None:
                activity[account_id] = later
            else:
                mine.merge(later)
        self.account_changes.extend(other.account_changes)
        self.dormancy_marks.extend(other.dormancy_marks)
        self.pupil_access.extend(other.pupil_access)  # later views after earlier ones
        self.login_outcomes.extend(other.login_outcomes)


