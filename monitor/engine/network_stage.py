"""The network stage: detectors keyed by source network, fed by every shard's login outcomes.

Events are partitioned by account, so the failures of one source land on every partition. The
group-by is done the way Kafka Streams and Quix do it: each shard hands on its login attempts
as small `LoginOutcome` records (in its findings); they are published to a repartition topic
keyed by source network (`portal.login-outcomes`, at least once, before the shard's offsets are
committed); a stage per partition of that topic reads them in its own consumer group and runs
the source detectors (`password_spray`). Its state is checkpointed in PostgreSQL with its
offsets exactly like a shard's, so a new owner carries on where the last checkpoint stood and
the alerts it repeats keep their ids (the sinks store them once).

Like a shard, the stage runs in event time: outcomes wait in a reorder buffer until the stage's
watermark (newest event time seen minus the allowed lateness) passes them, then run in
(event time, event id) order, so the interleaving of the shards' records on the topic does not
change what is found. A replay feeds the same stage in process (`feed`), in one partition.
"""

from __future__ import annotations

import heapq
from typing import Any, Iterable, Sequence

import msgspec

from detectors.base import snapshots
from monitor.contract.durations import Seconds
from monitor.contract.outcomes import LoginOutcome
from monitor.engine.findings import NO_WATERMARK, DeadLetter, Findings
from monitor.engine.shard import RedeliveryWindow
from monitor.ingest.decode import bounded_raw

SNAPSHOT_VERSION = 1
OUTCOMES: tuple[str, ...] = ("processed", "late", "duplicate", "invalid")


class NetworkStageSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The repartition topic between the shards and the stage, and the stage's consumer group.

    Used when a source detector (`password_spray`) is enabled; create the topic with as many
    partitions as the events topic (or any number: the stage scales by it alone)."""

    topic: str = "portal.login-outcomes"
    group_id: str = "portal-monitor-login-outcomes"
    allowed_lateness: Seconds = Seconds(5)
    """How far behind the newest outcome an outcome may arrive and still be run in event-time
    order: the shards of several processes publish at their own pace. Live, a partition quiet
    for this long (wall clock) releases everything it holds (never further than its newest
    event time), so an alert waits at most about this long."""


class StageSnapshot(msgspec.Struct, array_like=True):
    """A stage's state as checkpointed with its offset (the reorder buffer is re-read)."""

    version: int
    watermark: float
    max_event_time: float
    recent_event_ids: list[str]
    detectors: dict[str, msgspec.Raw]


class NetworkStage:
    """Source detectors and an event-time clock for the networks of one repartition partition."""

    def __init__(
        self,
        partition: int,
        *,
        detectors: Sequence[Any],
        allowed_lateness: float,
        dedup_window: int,
    ) -> None:
        self.partition = partition
        self.detectors = list(detectors)
        self.allowed_lateness = allowed_lateness
        self.redeliveries = RedeliveryWindow(dedup_window)
        self.max_event_time = NO_WATERMARK
        self.watermark = NO_WATERMARK
        self.counts: dict[str, int] = {}
        self._buffer: list[tuple[float, str, int, LoginOutcome]] = []  # heap by (at, event_id)
        self._next_offset: int | None = None
        self._findings = Findings()
        self._decode = msgspec.json.Decoder(LoginOutcome).decode
        self._calls = tuple(d.on_outcome for d in self.detectors)

    # -- input --------------------------------------------------------------------------------

    def process(self, records: Iterable[tuple[int, bytes]]) -> Findings:
        """Decode, buffer and run a batch of (offset, raw record) from the topic; what it found."""
        decode = self._decode
        outcomes = []
        offset = None
        for offset, raw in records:
            try:
                outcomes.append((offset, decode(raw)))
            except msgspec.MsgspecError as error:
                self.counts["invalid"] = self.counts.get("invalid", 0) + 1
                text, length, digest = bounded_raw(raw)  # cut to 64 KiB, with its length and hash
                self._findings.dead_letters.append(
                    DeadLetter(
                        reason="invalid_login_outcome", detail=str(error)[:1024], partition=self.partition,
                        offset=offset, raw=text, raw_length=length, raw_sha256=digest,
                    )
                )
        if offset is not None:
            self._next_offset = offset + 1
        return self._take(outcomes)

    def feed(self, outcomes: Iterable[LoginOutcome]) -> Findings:
        """Run outcomes handed over in process (a replay): as `process`, without offsets."""
        return self._take((-1, outcome) for outcome in outcomes)

    def _take(self, outcomes: Iterable[tuple[int, LoginOutcome]]) -> Findings:
        buffer = self._buffer
        watermark = self.watermark
        max_at = self.max_event_time
        for offset, outcome in outcomes:
            at = outcome.at
            if at > max_at:
                max_at = at
            if at < watermark:
                self._run(outcome, late=True)
            else:
                heapq.heappush(buffer, (at, outcome.event_id, offset, outcome))
        self.max_event_time = max_at
        self.advance(max_at - self.allowed_lateness)
        return self.take_findings()

    # -- the clock ----------------------------------------------------------------------------

    def advance(self, watermark: float) -> None:
        """Move the event-time clock to `watermark` (never back): release in order, then tick."""
        if watermark <= self.watermark:
            return
        self.watermark = watermark
        buffer = self._buffer
        while buffer and buffer[0][0] <= watermark:
            self._run(heapq.heappop(buffer)[3], late=False)
        for detector in self.detectors:
            alerts = detector.on_tick(watermark)
            if alerts:
                self._findings.alerts.extend(alerts)

    @property
    def buffered(self) -> int:
        """Outcomes held in the reorder buffer."""
        return len(self._buffer)

    def release(self) -> Findings:
        """Run everything buffered, moving the clock to the newest event time seen and no further
        (live: the partition has been quiet for the allowed lateness)."""
        if self._buffer:
            self.advance(self.max_event_time)
        return self.take_findings()

    def drain(self) -> Findings:
        """Release everything still buffered (the end of a replay)."""
        if self._buffer:
            self.advance(max(item[0] for item in self._buffer))
        return self.take_findings()

    def take_findings(self) -> Findings:
        findings, self._findings = self._findings, Findings()
        return findings

    def _run(self, outcome: LoginOutcome, late: bool) -> None:
        if self.redeliveries.seen(outcome.event_id):
            self.counts["duplicate"] = self.counts.get("duplicate", 0) + 1
            return
        key = "late" if late else "processed"
        self.counts[key] = self.counts.get(key, 0) + 1
        for call in self._calls:
            alerts = call(outcome)
            if alerts:
                self._findings.alerts.extend(alerts)

    def active_sources(self) -> int:
        """Sources spraying now, by the stage's clock (for the gauge)."""
        return sum(d.active(self.watermark) for d in self.detectors if hasattr(d, "active"))

    # -- offsets and checkpoints --------------------------------------------------------------

    @property
    def next_offset(self) -> int | None:
        return self._next_offset

    def commit_offset(self) -> int | None:
        """The offset to commit: the oldest record still buffered, else one past the last read."""
        buffered = [item[2] for item in self._buffer if item[2] >= 0]
        return min(buffered) if buffered else self._next_offset

    def snapshot(self) -> bytes:
        detectors = snapshots(self.detectors)
        return msgspec.msgpack.encode(
            StageSnapshot(
                version=SNAPSHOT_VERSION,
                watermark=self.watermark,
                max_event_time=self.max_event_time,
                recent_event_ids=self.redeliveries.recent(),
                detectors=detectors,
            )
        )

    # The checkpoint protocol of `monitor.service.checkpoints.CheckpointStore`, as a shard's: the
    # stage's state is small (open windows of active sources), so every checkpoint is whole.

    def checkpoint(self, full: bool) -> bytes:
        return self.snapshot()

    def checkpointed(self) -> None:
        """Nothing to forget: no changes are tracked between checkpoints."""

    def apply_delta(self, data: bytes) -> None:
        self.restore(data)  # never written (the stage's store writes full checkpoints only)

    def restore(self, data: bytes) -> None:
        snapshot = msgspec.msgpack.decode(data, type=StageSnapshot)
        if snapshot.version != SNAPSHOT_VERSION:
            raise ValueError(f"network stage checkpoint version {snapshot.version} is not {SNAPSHOT_VERSION}")
        self.watermark = snapshot.watermark
        self.max_event_time = snapshot.max_event_time
        self.redeliveries.load(snapshot.recent_event_ids)
        for detector in self.detectors:
            raw = snapshot.detectors.get(detector.id)
            if raw is not None:
                detector.restore(msgspec.msgpack.decode(raw))


def build_stage(partition: int, spray_settings: Any, allowed_lateness: float, dedup_window: int) -> NetworkStage:
    """A stage with the enabled source detectors."""
    from detectors.password_spray import PasswordSpray

    detectors = [PasswordSpray(spray_settings)] if spray_settings.enabled else []
    return NetworkStage(partition, detectors=detectors, allowed_lateness=allowed_lateness, dedup_window=dedup_window)


def publish_stage_counts(metrics: Any, stages: Iterable[NetworkStage]) -> None:
    """The stages' counters and the spraying-sources gauge into Prometheus (once per batch)."""
    active = 0
    for stage in stages:
        if stage.counts:
            for outcome, n in stage.counts.items():
                metrics.login_outcomes.labels(outcome).inc(n)
            stage.counts.clear()
        active += stage.active_sources()
    metrics.spray_sources_active.set(active)
