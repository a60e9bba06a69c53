"""The shards of this process, one per assigned partition: assign, revoke, run a batch.

Running a batch is synchronous CPU work with no awaits: each partition's records go through
its `Shard`, and the batch's findings come back. The counters the shards keep in plain ints
are moved into Prometheus once per batch here, never per event.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable, Mapping

from monitor.engine.findings import Findings, ShardClock
from monitor.engine.shard import Shard
from monitor.support.metrics import Metrics


class Shards:
    """Owns the shards of this process; built from a `shard_factory(partition)`."""

    def __init__(self, shard_factory: Callable[[int], Shard], metrics: Metrics) -> None:
        self.shard_factory = shard_factory
        self.metrics = metrics
        self.by_partition: dict[int, Shard] = {}
        self.events_seen = 0
        self._batches = 0
        # Every Nth batch runs with each detector call timed, for portal_monitor_detector_processing_seconds.
        self.time_detectors_every = 16

    def __getitem__(self, partition: int) -> Shard:
        return self.by_partition[partition]

    def __len__(self) -> int:
        return len(self.by_partition)

    def __contains__(self, partition: object) -> bool:
        return partition in self.by_partition

    def items(self):
        return self.by_partition.items()

    def shard(self, partition: int) -> Shard:
        shard = self.by_partition.get(partition)
        if shard is None:
            shard = self.by_partition[partition] = self.shard_factory(partition)
        return shard

    def assign(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self.shard(partition)
        self.metrics.assigned_partitions.set(len(self.by_partition))

    def revoke(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self.by_partition.pop(partition, None)
        self.metrics.assigned_partitions.set(len(self.by_partition))

    def run(self, batch: Mapping[int, list[tuple[int, bytes]]]) -> Findings:
        """Run records through their shards (synchronous, no awaits); the batch's findings."""
        started = time.perf_counter()
        findings = Findings()
        count = 0
        self._batches += 1
        timed = self._batches % self.time_detectors_every == 1 or self.time_detectors_every == 1
        for partition, records in batch.items():
            count += len(records)
            shard = self.shard(partition)
            if timed:
                shard.timed(True)
            findings.extend(shard.process(records))
            if timed:
                shard.timed(False)
                for detector_id, seconds in shard.detector_seconds.items():
                    self.metrics.detector_seconds.labels(detector_id).observe(seconds)
                shard.detector_seconds.clear()
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        if count:
            self.metrics.batch_events.observe(count)
            self.metrics.last_event.set(time.time())
        self.events_seen += count
        self.publish_counts()
        return findings

    def drain(self) -> Findings:
        """Release every shard's reorder buffer (the end of a replayed file)."""
        findings = Findings()
        for shard in self.by_partition.values():
            findings.extend(shard.drain())
        self.publish_counts()
        return findings

    def publish_counts(self) -> None:
        """Move the shards' plain counters into Prometheus: once per batch, not per event."""
        m = self.metrics
        now = time.time()
        open_sessions = accounts = 0
        for shard in self.by_partition.values():
            if shard.counts:
                for (event_type, outcome), n in shard.counts.items():
                    m.events.labels(event_type, outcome).inc(n)
                shard.counts.clear()
            if shard.rejections:
                for reason, n in shard.rejections.items():
                    m.invalid_events.labels(reason).inc(n)
                shard.rejections.clear()
            for detector_id, tallies in shard.take_tallies():
                m.add_tallies(detector_id, tallies)
            if shard.login_failures:
                for portal, n in shard.login_failures.items():
                    m.login_failures.labels(portal or "unknown").inc(n)
                shard.login_failures.clear()
            if shard.sessions_left_open:
                for portal, n in shard.sessions_left_open.items():
                    m.sessions_left_open.labels(portal).inc(n)
                shard.sessions_left_open.clear()
            partition = str(shard.partition)
            if shard.max_event_time > 0:
                m.event_lag.labels(partition).set(now - shard.max_event_time)
                m.watermark.labels(partition).set(max(shard.watermark, 0))
            open_sessions += shard.sessions.open_sessions
            accounts += len(shard.sessions.accounts)
        m.open_sessions.set(open_sessions)
        m.tracked_accounts.set(accounts)

    def clocks(self) -> list[ShardClock]:
        """Every shard's event-time clock now: taken right after a batch ran, for its delivery."""
        return [ShardClock(shard.partition, shard.watermark) for shard in self.by_partition.values()]

    def positions(self) -> dict[int, int]:
        """The next offset each shard expects: for the consumer lag."""
        return {p: s.next_offset for p, s in self.by_partition.items() if s.next_offset is not None}

    def commit_offsets(self) -> dict[int, int]:
        """Offsets safe to commit once the findings so far are delivered, per partition."""
        offsets = {}
        for partition, shard in self.by_partition.items():
            offset = shard.commit_offset()
            if offset is not None:
                offsets[partition] = offset
        return offsets
