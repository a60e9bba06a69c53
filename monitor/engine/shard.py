"""The engine: one shard per Kafka partition (one for a replayed file).

A shard owns the state of the accounts in its partition. For each batch it decodes every
record once, drops redeliveries, holds events in a reorder buffer until the event-time
watermark (max event time seen minus the allowed lateness) passes them, then runs them in
event-time order through the session table and the detectors interested in their type.
Logins, and page views that change their session's IP address, are located by the process's
`GeoServices` right after the session table saw them and before any detector; detectors that
list `IP_CHANGED` are called for those page views only; detectors that list `PUPIL_VIEW` are
called for the page views that name a pupil only: the other page views pay nothing for them.
Everything here is synchronous: the only awaits are at the edges (sources and sinks).
"""

from __future__ import annotations

import heapq
import time
from datetime import datetime
from collections import deque
from itertools import islice
from typing import Any, Iterable, Sequence

import msgspec

from detectors.base import IP_CHANGED, PUPIL_VIEW, Detector, snapshots
from monitor.contract.accounts import STATUS_EVENTS, AccountActivity, DormancyMark, StatusChange
from monitor.contract.alerts import Alert
from monitor.engine.findings import NO_WATERMARK, FlaggedSession, Findings, ViewedItemRecord, dead_letter
from monitor.ingest.decode import EARLIEST_EVENT_TIME, EventDecoder, Rejection
from monitor.contract.events import EVENT_TYPES, PORTAL_LABELS, PortalEvent
from monitor.state.sessions import AccountState, OneSession, Session, SessionTable
from monitor.contract.settings import Section
from monitor.contract.durations import Seconds
from monitor.places.networks import NetworkMap
from monitor.places.shared_networks import egress_key
from monitor.contract.outcomes import LoginOutcome

SNAPSHOT_VERSION = 2  # 2: an account's lone session is written as [session] (OneSession); 1 is still read
DELTA_VERSION = 1


# A Schools' Portal page view naming a pupil: PUPIL_VIEW's detectors but those that leave
# staff views alone (`Detector.staff_pupil_views`).
STAFF_PUPIL_VIEW = "pupil_view/schools"
ROUTES: tuple[str, ...] = (*EVENT_TYPES, PUPIL_VIEW, STAFF_PUPIL_VIEW)


def _routed(detector: Detector, route: str) -> bool:
    """Whether `detector` is called for events of `route` (an event type, PUPIL_VIEW or STAFF_PUPIL_VIEW)."""
    types = detector.event_types
    if route == STAFF_PUPIL_VIEW:
        return "page_view" in types or (PUPIL_VIEW in types and detector.staff_pupil_views)
    return route in types or (route == PUPIL_VIEW and "page_view" in types)


class ShardSnapshot(msgspec.Struct, array_like=True):
    """A shard's state as checkpointed with its offset: enough to carry on elsewhere.

    The reorder buffer is not in it: the checkpoint's offset is the oldest buffered record, so
    those records are read again; the recent event ids make the re-read of records that were
    already processed a no-op.
    """

    version: int
    watermark: float
    max_event_time: float
    recent_event_ids: list[str]
    accounts: list[AccountState]
    detectors: dict[str, msgspec.Raw]


class ShardDelta(msgspec.Struct, array_like=True):
    """What changed in a shard since its last confirmed checkpoint: applied over it on restore.

    `changed` names every account whose state may differ; for each, its session-table entry
    (in `accounts`, absent when it has no live session) and each keyed detector's entry (in
    `keyed`, absent when it has none) replace what the earlier checkpoint held. Detectors that
    keep no per-account mapping are written whole (`detectors`; None when their `snapshot()` is,
    restored as `restore(None)`: empty); `new_event_ids` are the
    redelivery window's ids added since, oldest first.
    """

    version: int
    watermark: float
    max_event_time: float
    new_event_ids: list[str]
    changed: list[str]
    accounts: list[AccountState]
    keyed: dict[str, msgspec.Raw]
    detectors: dict[str, msgspec.Raw]


class RedeliveryWindow:
    """The last N event ids seen: a repeated id within the window is a redelivery.

    Bounded by count, not by account: N ids (`engine.dedup_window`) whatever the traffic.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._ids: set[str] = set()
        self._order: deque[str] = deque()
        self.added = 0  # ids added since the shard was built: what a checkpoint delta counts from

    def recent(self) -> list[str]:
        return list(self._order)

    def newest(self, count: int) -> list[str]:
        """The last `count` ids added (all of the window if it holds fewer), oldest first."""
        order = self._order
        if count >= len(order):
            return list(order)
        return list(islice(order, len(order) - count, None)) if count > 0 else []

    def load(self, event_ids: list[str]) -> None:
        self._order = deque(event_ids[-self.size :])
        self._ids = set(self._order)

    def extend(self, event_ids: list[str]) -> None:
        """Append ids as if seen in this order (a checkpoint delta's), the oldest leaving."""
        if len(event_ids) >= self.size:
            self.load(event_ids)
            return
        ids, order = self._ids, self._order
        for event_id in event_ids:
            ids.add(event_id)
            order.append(event_id)
            if len(order) > self.size:
                ids.discard(order.popleft())

    def seen(self, event_id: str) -> bool:
        """True if `event_id` was seen before; otherwise remember it."""
        ids = self._ids
        if event_id in ids:
            return True
        ids.add(event_id)
        self.added += 1
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
        max_clock_skew: float = 300.0,
        geo: Any = None,
        gap_floor: float = float("inf"),
        access_log: bool = False,
        networks: NetworkMap | None = None,
    ) -> None:
        self.partition = partition
        self.geo = geo  # monitor.places.geo.GeoServices: locates logins and IP changes before detectors run
        self.decoder = decoder
        self.sessions = sessions
        self.detectors = list(detectors)
        self.allowed_lateness = allowed_lateness
        self.max_clock_skew = max_clock_skew
        # Given, login attempts are also handed on as `LoginOutcome`s for the network stage.
        self.networks = networks
        self.login_failures: dict[str | None, int] = {}  # by portal, for portal_monitor_login_failures_total
        self.gap_floor = gap_floor  # idle spells at least this long within a batch are noted for dormancy
        self.redeliveries = RedeliveryWindow(dedup_window)
        self.max_event_time = NO_WATERMARK
        self.watermark = NO_WATERMARK
        self.counts: dict[tuple[str, str], int] = {}
        self.rejections: dict[str, int] = {}
        # Sessions that ended without a logout (idle timeout or the portal's `session_expired`),
        # by portal: `portal_monitor_sessions_left_open_total`, moved to Prometheus per batch.
        self.sessions_left_open: dict[str, int] = {}
        self._ended_seen = 0  # how many of `sessions.closed` the detectors were handed
        # The reorder buffer, as (at, seq, offset, event): events that arrived in event-time
        # order (nearly all) queue in `_buffer` at O(1); only the out-of-order ones pay for a
        # heap, `_stragglers`. Release merges the two by (at, seq), seq being arrival order.
        self._buffer: deque[tuple[float, int, int, PortalEvent]] = deque()
        self._stragglers: list[tuple[float, int, int, PortalEvent]] = []
        self._seq = 0
        self._next_offset: int | None = None
        self._findings = Findings()
        # The batch's access log (`Findings.pupil_access`) when `access_log`, else None: one
        # attribute read per pupil view instead of three.
        self._access: list | None = self._findings.pupil_access if access_log else None
        # Incremental checkpoints: the accounts whose state changed since the last checkpoint
        # was taken (`_dirty`, gathered per batch from the findings, never per event), and
        # those taken into a checkpoint not yet confirmed written (`_unconfirmed`). Tracked only
        # from the first checkpoint or restore on: a replay, which never checkpoints, would
        # otherwise remember every account it saw.
        self._tracking = False
        self._dirty: set[str] = set()
        self._unconfirmed: set[str] = set()
        self._ids_taken = 0
        self._ids_confirmed = 0
        self._keyed = tuple(d for d in self.detectors if d.accounts_state() is not None)
        # By route: the event's type, or PUPIL_VIEW for a page view naming a pupil (whose
        # detectors are those of "page_view" and of PUPIL_VIEW, in registry order).
        self._dispatch: dict[str, tuple] = {
            route: tuple(d.on_event for d in self.detectors if _routed(d, route)) for route in ROUTES
        }
        self._on_ip_change = tuple(d.on_event for d in self.detectors if IP_CHANGED in d.event_types)
        self._ticks = tuple(d.on_tick for d in self.detectors if type(d).on_tick is not Detector.on_tick)
        self._on_ended = tuple(
            d.on_sessions_ended for d in self.detectors if type(d).on_sessions_ended is not Detector.on_sessions_ended
        )
        self._tallying = tuple(d for d in self.detectors if type(d).take_tallies is not Detector.take_tallies)
        # The same tables with every call timed into `detector_seconds`, swapped in for a
        # sampled batch only (`timed(True)`), so ordinary batches pay nothing for the metric.
        self.detector_seconds: dict[str, float] = {}
        self._untimed = (self._dispatch, self._on_ip_change, self._ticks, self._on_ended)
        self._with_timers = (
            {
                route: tuple(self._timer(d.id, d.on_event) for d in self.detectors if _routed(d, route))
                for route in ROUTES
            },
            tuple(self._timer(d.id, d.on_event) for d in self.detectors if IP_CHANGED in d.event_types),
            tuple(self._timer(d.id, d.on_tick) for d in self.detectors if type(d).on_tick is not Detector.on_tick),
            tuple(
                self._timer(d.id, d.on_sessions_ended)
                for d in self.detectors
                if type(d).on_sessions_ended is not Detector.on_sessions_ended
            ),
        )

    @property
    def access_log(self) -> bool:
        """Whether views of pupils' records go into `Findings.pupil_access` (the access log)."""
        return self._access is not None

    @access_log.setter
    def access_log(self, on: bool) -> None:
        self._access = self._findings.pupil_access if on else None

    def _timer(self, detector_id: str, call):
        seconds = self.detector_seconds
        clock = time.perf_counter

        def timed_call(*args):
            started = clock()
            try:
                return call(*args)
            finally:
                seconds[detector_id] = seconds.get(detector_id, 0.0) + clock() - started

        return timed_call

    def timed(self, on: bool) -> None:
        """Time every detector call from now on (`on`), or stop; see `detector_seconds`."""
        self._dispatch, self._on_ip_change, self._ticks, self._on_ended = self._with_timers if on else self._untimed

    # -- the batch ---------------------------------------------------------------------------

    def process(self, records: Iterable[tuple[int, bytes]]) -> Findings:
        """Decode, buffer and run one batch of (offset, raw record); what it produced."""
        decode = self.decoder.decode
        buffer = self._buffer
        lateness = self.allowed_lateness
        max_at = self.max_event_time
        watermark = self.watermark  # only `advance` moves it, after the loop
        seq = self._seq
        horizon = time.time() + self.max_clock_skew
        offset = None
        for offset, raw in records:
            event = decode(raw)
            if type(event) is Rejection:
                self._reject(event, offset, raw)
                continue
            at = event.at  # type: ignore[union-attr]
            if at > horizon:
                self._reject(Rejection("future_timestamp", f"ts {event.ts.isoformat()} is more than {self.max_clock_skew:.0f} s ahead of the clock"), offset, raw)  # type: ignore[union-attr]
                continue
            if at > max_at:
                max_at = at
            if lateness <= 0 or at < watermark:
                self._run_guarded(event, offset, late=at < watermark)  # type: ignore[arg-type]
            else:
                seq += 1
                if not buffer or at >= buffer[-1][0]:
                    buffer.append((at, seq, offset, event))  # type: ignore[arg-type]
                else:
                    heapq.heappush(self._stragglers, (at, seq, offset, event))  # type: ignore[misc]
        if offset is not None:
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
        run = self._run_guarded
        if not stragglers:  # nearly always: events arrived in event-time order
            popleft = buffer.popleft
            run_one = self._run
            while buffer and buffer[0][0] <= watermark:
                _, _, offset, event = popleft()
                try:  # _run_guarded, inline: one call fewer per event
                    run_one(event, False)
                except Exception as error:
                    self._failed(event, offset, error)
        while True:
            if buffer and buffer[0][0] <= watermark:
                if stragglers and stragglers[0][:2] < buffer[0][:2]:
                    item = heapq.heappop(stragglers)
                else:
                    item = buffer.popleft()
            elif stragglers and stragglers[0][0] <= watermark:
                item = heapq.heappop(stragglers)
            else:
                break
            run(item[3], item[2], False)
        self.sessions.expire(watermark)
        self._sessions_ended()
        for tick in self._ticks:
            alerts = tick(watermark)
            if alerts:
                self._raise(alerts)

    def _sessions_ended(self) -> None:
        """Count the sessions that ended without a logout since the last call, and hand them to
        the detectors that follow them (`Detector.on_sessions_ended`).

        Called after each expiry sweep: by then every session that ended before the watermark,
        by the idle timeout, in a page view that found it expired, or by the portal's
        `session_expired`, is in `sessions.closed`, whatever the batches were; the detectors
        see them in event time order (`closed_at`) whether replayed or live. Per session, not
        per event: no cost for page views.
        """
        closed = self.sessions.closed
        seen = self._ended_seen
        if len(closed) <= seen:
            return
        ended = closed[seen:] if seen else closed
        self._ended_seen = len(closed)
        counts = self.sessions_left_open
        for session in ended:
            if session.close_reason != "max_duration":  # active to the end: not left unattended
                portal = session.portal if session.portal in PORTAL_LABELS else "unknown"
                counts[portal] = counts.get(portal, 0) + 1
        for on_ended in self._on_ended:
            alerts = on_ended(ended)
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
        closed = self.sessions.closed
        tracking = self._tracking
        if closed:
            self._sessions_ended()
            dirty = self._dirty
            for session in closed:
                if tracking:
                    dirty.add(session.account_id)
                if session.flagged:
                    self._flag(session, ())
            closed.clear()
            self._ended_seen = 0
        findings, self._findings = self._findings, Findings()
        if self._access is not None:
            self._access = self._findings.pupil_access
        for detector in self._keyed:  # taken each batch, so they do not pile up in a replay
            forgotten = detector.take_forgotten()
            if forgotten and tracking:
                self._dirty.update(forgotten)
        if tracking:
            self._dirty.update(findings.account_activity)  # every account an event ran for
        return findings

    def take_tallies(self) -> list[tuple[str, dict[str, int]]]:
        """(detector id, counts) its detectors kept since the last call, for metrics (per batch)."""
        taken = []
        for detector in self._tallying:
            tallies = detector.take_tallies()
            if tallies:
                taken.append((detector.id, tallies))
        return taken

    @property
    def next_offset(self) -> int | None:
        """One past the last record read (not necessarily processed): the read position."""
        return self._next_offset

    def commit_offset(self) -> int | None:
        """The offset to commit: the oldest still buffered, else one past the last seen."""
        oldest = self._buffer[0][2] if self._buffer else self._next_offset  # arrival order: lowest first
        if self._stragglers:
            lowest = min(item[2] for item in self._stragglers)
            oldest = lowest if oldest is None else min(oldest, lowest)
        return oldest

    # -- checkpoints -------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The shard's state for a checkpoint, to be stored with `commit_offset()`."""
        detectors = snapshots(self.detectors)
        return msgspec.msgpack.encode(
            ShardSnapshot(
                version=SNAPSHOT_VERSION,
                watermark=self.watermark,
                max_event_time=self.max_event_time,
                recent_event_ids=self.redeliveries.recent(),
                accounts=list(self.sessions.accounts.values()),
                detectors=detectors,
            )
        )

    def checkpoint(self, full: bool) -> bytes:
        """The state to store with `commit_offset()`: all of it (`full`, as `snapshot`), or a
        `ShardDelta` of what changed since the last checkpoint confirmed by `checkpointed()`.

        Until confirmed, what this checkpoint took stays owed: if its write fails, the next
        delta carries it again with whatever changed since. A delta needs a full checkpoint
        taken, or a checkpoint restored, before it.
        """
        if not full and not self._tracking:
            raise ValueError("a checkpoint delta needs a full checkpoint or a restore before it")
        self._tracking = True
        self._collect_dirty()
        if self._dirty:
            self._unconfirmed |= self._dirty
            self._dirty = set()
        self._ids_taken = self.redeliveries.added
        if full:
            return self.snapshot()
        return self._delta(self._unconfirmed, self._ids_taken - self._ids_confirmed)

    def checkpointed(self) -> None:
        """The last `checkpoint()` is stored: the next delta starts from it."""
        self._unconfirmed = set()
        self._ids_confirmed = self._ids_taken

    def _collect_dirty(self) -> None:
        """Fold in changes not yet gathered: the findings in hand, and what detectors evicted."""
        dirty = self._dirty
        dirty.update(self._findings.account_activity)
        for session in self.sessions.closed:
            dirty.add(session.account_id)
        for detector in self._keyed:
            forgotten = detector.take_forgotten()
            if forgotten:
                dirty.update(forgotten)

    def _delta(self, changed: set[str], new_ids: int) -> bytes:
        encode = msgspec.msgpack.encode
        names = list(changed)
        table = self.sessions.accounts
        keyed: dict[str, msgspec.Raw] = {}
        detectors: dict[str, msgspec.Raw] = {}
        for detector in self.detectors:
            entries = detector.accounts_state()
            if entries is not None:
                keyed[detector.id] = msgspec.Raw(encode({a: entries[a] for a in names if a in entries}))
                continue
            # Whole, and None too: a state that became empty must reach the restored copy as such.
            detectors[detector.id] = msgspec.Raw(encode(detector.snapshot()))
        return encode(
            ShardDelta(
                version=DELTA_VERSION,
                watermark=self.watermark,
                max_event_time=self.max_event_time,
                new_event_ids=self.redeliveries.newest(new_ids),
                changed=names,
                accounts=[table[a] for a in names if a in table],
                keyed=keyed,
                detectors=detectors,
            )
        )

    def apply_delta(self, data: bytes) -> None:
        """Apply a `checkpoint(full=False)` over the state restored so far (in written order)."""
        delta = msgspec.msgpack.decode(data, type=ShardDelta)
        if delta.version != DELTA_VERSION:
            raise ValueError(f"checkpoint delta version {delta.version} is not {DELTA_VERSION}")
        self.watermark = delta.watermark
        self.max_event_time = delta.max_event_time
        self.redeliveries.extend(delta.new_event_ids)
        self.sessions.replace(delta.changed, delta.accounts)
        decode = msgspec.msgpack.decode
        for detector in self.detectors:
            raw = delta.keyed.get(detector.id)
            if raw is not None:
                detector.restore_accounts(delta.changed, decode(raw))
            raw = delta.detectors.get(detector.id)
            if raw is not None:
                detector.restore(decode(raw))

    def restore(self, data: bytes) -> None:
        """Load a checkpoint written by `snapshot` into this fresh shard."""
        snapshot = msgspec.msgpack.decode(data, type=ShardSnapshot)
        if not 1 <= snapshot.version <= SNAPSHOT_VERSION:
            raise ValueError(f"checkpoint version {snapshot.version} is not 1 to {SNAPSHOT_VERSION}")
        self._tracking = True  # the next checkpoint may be a delta over this one
        self.watermark = snapshot.watermark
        self.max_event_time = snapshot.max_event_time
        self.redeliveries.load(snapshot.recent_event_ids)
        self.sessions.load(snapshot.accounts)
        for detector in self.detectors:
            raw = snapshot.detectors.get(detector.id)
            if raw is not None:
                detector.restore(msgspec.msgpack.decode(raw))

    # -- one event ---------------------------------------------------------------------------

    def _run_guarded(self, event: PortalEvent, offset: int, late: bool) -> None:
        """Run one event; a failure inside (a poison record meeting a bug) becomes a dead letter."""
        try:
            self._run(event, late)
        except Exception as error:  # never let one record stop the partition
            self._failed(event, offset, error)

    def _failed(self, event: PortalEvent, offset: int, error: Exception) -> None:
        """An event whose run raised (a poison record meeting a bug) becomes a dead letter."""
        if self._tracking:
            self._dirty.add(event.account_id)  # it may have changed part of the account's state
        raw = msgspec.json.encode(event).decode()
        self._reject(Rejection("processing_error", f"{type(error).__name__}: {error}"), offset, raw)

    def _run(self, event: PortalEvent, late: bool) -> None:
        kind = event.type
        # RedeliveryWindow.seen, inline (one call fewer per event): a repeated id is a redelivery.
        window = self.redeliveries
        event_id = event.event_id
        ids = window._ids
        if event_id in ids:
            key = (kind, "duplicate")
            self.counts[key] = self.counts.get(key, 0) + 1
            return
        ids.add(event_id)
        window.added += 1
        order = window._order
        order.append(event_id)
        if len(order) > window.size:
            ids.discard(order.popleft())
        key = (kind, "late" if late else "processed")
        counts = self.counts
        counts[key] = counts.get(key, 0) + 1
        table = self.sessions
        accounts = table.accounts
        account_id = event.account_id
        account = accounts.get(account_id)
        if account is None:
            account = table.account(account_id)
        moved = False
        route = kind
        if kind == "page_view":
            sessions = account.sessions
            if type(sessions) is OneSession:  # OneSession.get, inline: nearly every page view
                known = sessions.session
                if known.session_id != event.session_id:
                    known = None
            else:
                known = sessions.get(event.session_id)  # type: ignore[arg-type]
            ip = event.ip
            # A located activity: the view changed its session's IP, or opened one unseen.
            moved = ip is not None and (known is None or ip != known.last_ip)
            session = table.view(event, account, known)
            pupil = event.pupil_id
            if pupil is not None:
                route = STAFF_PUPIL_VIEW if event.portal == "schools" else PUPIL_VIEW
                access = self._access
                if access is not None:  # the access log: the view itself, folded by the store
                    access.append(event)
            if session.flagged:
                self._findings.viewed_items.append(
                    ViewedItemRecord(session.session_id, session.account_id, event.at, event.resource, event.action, event.ip)  # type: ignore[arg-type]
                )
            if moved and self.geo is not None:
                if known is None:
                    self.geo.on_login(event, session)
                else:
                    self.geo.on_ip_change(event, session)
        elif kind == "login_succeeded":
            session = table.open(event, account)
            if self.geo is not None:
                self.geo.on_login(event, session)
            if self.networks is not None and session.network is not None:
                self._outcome(event, True, session.network, session.allowlisted)
        elif kind == "logout" or kind == "session_expired":
            closed = table.close(event, account, kind)
            if closed is not None and closed.flagged:
                self._flag(closed, ())
        elif kind == "login_failed":
            failures = self.login_failures
            failures[event.portal] = failures.get(event.portal, 0) + 1
            if self.networks is not None:
                info = self.networks.lookup(event.ip)  # type: ignore[arg-type]
                if info is not None:
                    self._outcome(event, False, info.network, info.allowlisted)
        for on_event in self._dispatch[route]:
            alerts = on_event(event, account)
            if alerts:
                self._raise(alerts)
        if moved:
            for on_event in self._on_ip_change:
                alerts = on_event(event, account)
                if alerts:
                    self._raise(alerts)
        if kind == "page_view":  # _note's page view, inline: four events in five
            at = event.at
            activities = self._findings.account_activity
            activity = activities.get(account_id)
            if activity is None:
                activity = activities[account_id] = AccountActivity(partition=self.partition, first_at=at)
            elif at < activity.first_at:
                activity.first_at = at
            if event.portal is not None:
                activity.portal = event.portal
            activity.known = True
            if activity.last_activity_at is None or at > activity.last_activity_at:
                activity.last_activity_at = at
        else:
            self._note(event, kind)
        sessions = account.sessions
        # An account left with no session is forgotten. A OneSession is never empty: testing its
        # type first spares the Python-level `__len__` that `not sessions` would call.
        if type(sessions) is not OneSession and not sessions and accounts.get(account_id) is account:
            del accounts[account_id]

    def _outcome(self, event: PortalEvent, succeeded: bool, network: str, allowlisted: bool) -> None:
        """Hand the login attempt on to the network stage (`monitor.engine.network_stage`)."""
        ip = event.ip
        shared = allowlisted
        if not shared and self.geo is not None:
            learnt = self.geo.shared
            if learnt.enabled and len(learnt):
                shared = egress_key(ip, network) in learnt  # type: ignore[arg-type]
        self._findings.login_outcomes.append(
            LoginOutcome(
                event.event_id, event.at, network, ip, event.account_id, succeeded,  # type: ignore[arg-type]
                shared, event.user_agent, event.portal, event.session_id,
            )
        )

    def _note(self, event: PortalEvent, kind: str) -> None:
        """Fold the event into the batch's per-account aggregate for the account registry
        (page views are folded in `_run` itself, the same way as logouts here)."""
        if kind == "pupil_linked" or kind == "pupil_unlinked":
            return  # the school's doing, not the account's: neither activity nor a status change
        at = event.at
        activities = self._findings.account_activity
        activity = activities.get(event.account_id)
        if activity is None:
            activity = activities[event.account_id] = AccountActivity(partition=self.partition, first_at=at)
        elif at < activity.first_at:
            activity.first_at = at
        if event.portal is not None:
            activity.portal = event.portal
        if kind == "logout" or kind == "session_expired":
            activity.known = True
            if activity.last_activity_at is None or at > activity.last_activity_at:
                activity.last_activity_at = at
            return
        if kind == "login_succeeded" or kind == "login_failed":
            succeeded = kind == "login_succeeded"
            activity.attempt(at, succeeded, event.ip, event.session_id, self.gap_floor)
            if not succeeded:
                return  # a failed login may name no account at all: not proof that it exists
            activity.known = True
            if not activity.inactive:
                activity.boundary(at, "login", self.gap_floor)
            if activity.last_login_at is None or at > activity.last_login_at:
                activity.last_login_at = at
            if activity.last_activity_at is None or at > activity.last_activity_at:
                activity.last_activity_at = at
            return
        activity.known = True
        if kind == "account_created":
            if activity.created_at is None or at > activity.created_at:
                activity.created_at = at
            activity.boundary(at, "created", self.gap_floor)
            return
        status = STATUS_EVENTS[kind]
        self._findings.account_changes.append(StatusChange(event.account_id, at, status, event.reason, status == "active"))
        activity.boundary(at, status if status != "active" else "enabled", self.gap_floor)

    def _raise(self, alerts: Sequence[Alert]) -> None:
        findings = self._findings
        for alert in alerts:
            findings.alerts.append(alert)
            if self._tracking:
                self._dirty.add(alert.account_id)  # its sessions are flagged below
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

    def _reject(self, rejection: Rejection, offset: int, raw: bytes | str | None) -> None:
        self.rejections[rejection.reason] = self.rejections.get(rejection.reason, 0) + 1
        self._findings.dead_letters.append(dead_letter(rejection, self.partition, offset, raw))


class EngineSettings(Section):
    """The event-time clock and redelivery window of each shard."""

    allowed_lateness: Seconds = Seconds(2)
    dedup_window: int = 200_000
    wall_clock_grace: Seconds = Seconds(30)
    max_clock_skew: Seconds = Seconds(300)
    """Events stamped further ahead of the wall clock are dead letters (`future_timestamp`):
    one producer with a wrong clock must not fast-forward event time for every account."""
    earliest_event_time: datetime = EARLIEST_EVENT_TIME
    """Events stamped before this are dead letters (`bad_timestamp`): a portal's audit log
    holds nothing older, and a year-1 or pre-1970 time is a broken clock or a forgery."""

    def __post_init__(self) -> None:
        if self.earliest_event_time.tzinfo is None:
            raise ValueError("engine.earliest_event_time: write the time with an offset or Z")
