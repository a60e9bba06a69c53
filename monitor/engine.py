"""The engine: one shard per Kafka partition (one for a replayed file).

A shard owns the state of the accounts in its partition. For each batch it decodes every
record once, drops redeliveries, holds events in a reorder buffer until the event-time
watermark (max event time seen minus the allowed lateness) passes them, then runs them in
event-time order through the session table and the detectors interested in their type.
Everything here is synchronous: the only awaits are at the edges (sources and sinks).
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import Iterable, Sequence

import msgspec

from detectors.base import Detector
from monitor.alerts import Alert
from monitor.decode import EventDecoder, Rejection
from monitor.events import EVENT_TYPES, PortalEvent
from monitor.sessions import Session, SessionTable

OUTCOMES: tuple[str, ...] = ("processed", "late", "duplicate")
NO_WATERMARK = float("-inf")


class DeadLetter(msgspec.Struct, kw_only=True):
    """A rejected record, with where it came from and why, kept whole for inspection."""

    reason: str
    detail: str
    partition: int
    offset: int
    raw: str


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


class Findings:
    """What one batch produced for the sinks."""

    __slots__ = ("alerts", "flagged_sessions", "viewed_items", "dead_letters")

    def __init__(self) -> None:
        self.alerts: list[Alert] = []
        self.flagged_sessions: dict[str, FlaggedSession] = {}
        self.viewed_items: list[ViewedItemRecord] = []
        self.dead_letters: list[DeadLetter] = []

    def __bool__(self) -> bool:
        return bool(self.alerts or self.flagged_sessions or self.viewed_items or self.dead_letters)

    def extend(self, other: "Findings") -> None:
        self.alerts.extend(other.alerts)
        self.flagged_sessions.update(other.flagged_sessions)
        self.viewed_items.extend(other.viewed_items)
        self.dead_letters.extend(other.dead_letters)


class RedeliveryWindow:
    """The last N event ids seen: a repeated id within the window is a redelivery."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._ids: set[str] = set()
        self._order: deque[str] = deque()

    def seen(self, event_id: str) -> bool:
        """True if `event_id` was seen before; otherwise remember it."""
        ids = self._ids
        if event_id in ids:
            return True
        ids.add(event_id)
        order = self._order
        order.append(event_id)
        if len(order) > self.size:
            ids.discard(order.popleft())
        return False


class Shard:
    """Detection state and event-time clock for the accounts of one partition."""

    def __init__(
        self,
        partition: int,
        *,
        decoder: EventDecoder,
        sessions: SessionTable,
        detectors: Sequence[Detector],
        allowed_lateness: float,
        dedup_window: int,
    ) -> None:
        self.partition = partition
        self.decoder = decoder
        self.sessions = sessions
        self.detectors = list(detectors)
        self.allowed_lateness = allowed_lateness
        self.redeliveries = RedeliveryWindow(dedup_window)
        self.max_event_time = NO_WATERMARK
        self.watermark = NO_WATERMARK
        self.counts: dict[tuple[str, str], int] = {}
        self.rejections: dict[str, int] = {}
        # The reorder buffer, as (at, seq, offset, event): events that arrived in event-time
        # order (nearly all) queue in `_buffer` at O(1); only the out-of-order ones pay for a
        # heap, `_stragglers`. Release merges the two by (at, seq), seq being arrival order.
        self._buffer: deque[tuple[float, int, int, PortalEvent]] = deque()
        self._stragglers: list[tuple[float, int, int, PortalEvent]] = []
        self._seq = 0
        self._next_offset: int | None = None
        self._findings = Findings()
        self._dispatch: dict[str, tuple] = {
            event_type: tuple(d.on_event for d in self.detectors if event_type in d.event_types)
            for event_type in EVENT_TYPES
        }
        self._ticks = tuple(d.on_tick for d in self.detectors if type(d).on_tick is not Detector.on_tick)

    # -- the batch ---------------------------------------------------------------------------

    def process(self, records: Iterable[tuple[int, bytes]]) -> Findings:
        """Decode, buffer and run one batch of (offset, raw record); what it produced."""
        decode = self.decoder.decode
        buffer = self._buffer
        lateness = self.allowed_lateness
        max_at = self.max_event_time
        watermark = self.watermark  # only `advance` moves it, after the loop
        seq = self._seq
        for offset, raw in records:
            event = decode(raw)
            if type(event) is Rejection:
                self._reject(event, offset, raw)
                continue
            at = event.at  # type: ignore[union-attr]
            if at > max_at:
                max_at = at
            if lateness <= 0 or at < watermark:
                self._run(event, late=at < watermark)  # type: ignore[arg-type]
            else:
                seq += 1
                if not buffer or at >= buffer[-1][0]:
                    buffer.append((at, seq, offset, event))  # type: ignore[arg-type]
                else:
                    heapq.heappush(self._stragglers, (at, seq, offset, event))  # type: ignore[misc]
            self._next_offset = offset + 1
        self._seq = seq
        self.max_event_time = max_at
        self.advance(max_at - lateness)
        return self.take_findings()

    def advance(self, watermark: float) -> None:
        """Move the event-time clock to `watermark` (never back): release, expire, tick."""
        if watermark <= self.watermark:
            return
        self.watermark = watermark
        buffer = self._buffer
        stragglers = self._stragglers
        run = self._run
        while True:
            if buffer and buffer[0][0] <= watermark:
                if stragglers and stragglers[0][:2] < buffer[0][:2]:
                    event = heapq.heappop(stragglers)[3]
                else:
                    event = buffer.popleft()[3]
            elif stragglers and stragglers[0][0] <= watermark:
                event = heapq.heappop(stragglers)[3]
            else:
                break
            run(event, False)
        for session in self.sessions.expire(watermark):
            if session.flagged:
                self._flag(session, ())
        for tick in self._ticks:
            alerts = tick(watermark)
            if alerts:
                self._raise(alerts)

    def drain(self) -> Findings:
        """Release everything still buffered (end of a replayed file, or shutdown)."""
        newest = [item[0] for item in self._stragglers]
        if self._buffer:
            newest.append(self._buffer[-1][0])
        if newest:
            self.advance(max(newest))
        return self.take_findings()

    def take_findings(self) -> Findings:
        """What the shard produced since the last call, handed over once."""
        findings, self._findings = self._findings, Findings()
        return findings

    def commit_offset(self) -> int | None:
        """The offset to commit: the oldest still buffered, else one past the last seen."""
        oldest = self._buffer[0][2] if self._buffer else self._next_offset  # arrival order: lowest first
        if self._stragglers:
            lowest = min(item[2] for item in self._stragglers)
            oldest = lowest if oldest is None else min(oldest, lowest)
        return oldest

    # -- one event ---------------------------------------------------------------------------

    def _run(self, event: PortalEvent, late: bool) -> None:
        kind = event.type
        if self.redeliveries.seen(event.event_id):
            key = (kind, "duplicate")
            self.counts[key] = self.counts.get(key, 0) + 1
            return
        key = (kind, "late" if late else "processed")
        self.counts[key] = self.counts.get(key, 0) + 1
        table = self.sessions
        account = table.account(event.account_id)
        if kind == "page_view":
            session = table.view(event, account)
            if session.flagged:
                self._findings.viewed_items.append(
                    ViewedItemRecord(session.session_id, session.account_id, event.at, event.resource, event.action, event.ip)  # type: ignore[arg-type]
                )
        elif kind == "login_succeeded":
            table.open(event, account)
        elif kind == "logout" or kind == "session_expired":
            closed = table.close(event, account, kind)
            if closed is not None and closed.flagged:
                self._flag(closed, ())
        for on_event in self._dispatch[kind]:
            alerts = on_event(event, account)
            if alerts:
                self._raise(alerts)
        if not account.sessions and table.accounts.get(event.account_id) is account:
            del table.accounts[event.account_id]

    def _raise(self, alerts: Sequence[Alert]) -> None:
        findings = self._findings
        for alert in alerts:
            findings.alerts.append(alert)
            state = self.sessions.accounts.get(alert.account_id)
            if state is None:
                continue
            for session_id in alert.session_ids:
                session = state.sessions.get(session_id)
                if session is not None:
                    session.flagged = True
                    self._flag(session, (alert.alert_id,))

    def _flag(self, session: Session, alert_ids: Sequence[str]) -> None:
        flagged = self._findings.flagged_sessions.get(session.session_id)
        if flagged is None:
            flagged = self._findings.flagged_sessions[session.session_id] = FlaggedSession(
                session=session, alert_ids=[]
            )
        flagged.alert_ids.extend(alert_ids)

    def _reject(self, rejection: Rejection, offset: int, raw: bytes | str) -> None:
        self.rejections[rejection.reason] = self.rejections.get(rejection.reason, 0) + 1
        text = raw if isinstance(raw, str) else raw.decode("utf-8", "backslashreplace")
        text = text.rstrip("\r\n")
        self._findings.dead_letters.append(
            DeadLetter(reason=rejection.reason, detail=rejection.detail, partition=self.partition, offset=offset, raw=text)
        )
        self._next_offset = offset + 1
