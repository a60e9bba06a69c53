"""The pipeline: batches in, shards run, findings delivered to every sink, then commit.

Order of a batch, and what a crash at each step means:
1. records are taken from the source (nothing is committed yet);
2. each partition's shard decodes and runs its records (in memory only);
3. the alert gate (noise control, `monitor.alerting.gate`) groups repeats and applies silences;
   the findings go to every sink; `deliver` returns only when all acknowledged (retrying
   with backoff while a sink is down, never dropping). With an account registry, `deliver`
   first checks the batch's login attempts against it, and after the sinks records the
   batch there and sweeps it for dormancy crossings (`monitor.accounts.lifecycle`);
4. only then the source commits each shard's `commit_offset()`.
A crash before 4 re-reads the batch on restart; the sinks are idempotent (alert_id,
session_id), so the redelivery creates nothing twice.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable, Mapping, Sequence

import structlog

from monitor.engine.shard import Shard

from monitor.engine.findings import Findings, ShardClock
from monitor.support.metrics import Metrics
from sinks.base import Sink

if TYPE_CHECKING:
    from monitor.alerting.gate import AlertGate

log = structlog.get_logger("monitor.delivery.pipeline")
ACCOUNT_REGISTRY = "account_registry"  # its writes are counted and retried like a sink's
GAVE_UP = object()  # a registry step abandoned at the shutdown deadline


class Pipeline:
    """Owns the shards of this process and moves each batch from source to sinks."""

    def __init__(
        self,
        shard_factory: Callable[[int], Shard],
        sinks: Sequence[Sink],
        metrics: Metrics,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
        gate: "AlertGate | None" = None,
        accounts=None,
    ) -> None:
        self.shard_factory = shard_factory
        self.gate = gate
        self.accounts = accounts  # monitor.accounts.lifecycle.AccountLifecycle, or None
        if accounts is not None:
            metrics.add_sinks([ACCOUNT_REGISTRY])
        self.sinks = list(sinks)
        self.metrics = metrics
        self.shards: dict[int, Shard] = {}
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.give_up = asyncio.Event()  # set when a shutdown deadline passes
        self.events_seen = 0
        self._batches = 0
        # Every Nth batch runs with each detector call timed, for portal_monitor_detector_processing_seconds.
        self.time_detectors_every = 16
        self.alerts_raised = 0

    def shard(self, partition: int) -> Shard:
        shard = self.shards.get(partition)
        if shard is None:
            shard = self.shards[partition] = self.shard_factory(partition)
        return shard

    def assign(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self.shard(partition)
        self.metrics.assigned_partitions.set(len(self.shards))

    async def assigned(self, partitions: Iterable[int], total: int | None = None) -> None:
        """New partitions: reload what the account registry lends the shards, then build them."""
        if self.accounts is not None:
            await self._retrying(self.accounts.refresh, total)
        self.assign(partitions)

    def revoke(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self.shards.pop(partition, None)
        self.metrics.assigned_partitions.set(len(self.shards))

    def run_batch(self, batch: Mapping[int, list[tuple[int, bytes]]]) -> Findings:
        """Run records through their shards (synchronous, no awaits); the findings."""
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

    def tick(self, now: float, grace: float) -> Findings:
        """Advance quiet shards from the wall clock: watermark = now - grace (live mode only)."""
        findings = Findings()
        for shard in self.shards.values():
            shard.advance(now - grace)
            findings.extend(shard.take_findings())
        self.publish_counts()
        return findings

    def publish_counts(self) -> None:
        """Move the shards' plain counters into Prometheus: once per batch, not per event."""
        m = self.metrics
        now = time.time()
        open_sessions = accounts = 0
        for shard in self.shards.values():
            if shard.counts:
                for (event_type, outcome), n in shard.counts.items():
                    m.events.labels(event_type, outcome).inc(n)
                shard.counts.clear()
            if shard.rejections:
                for reason, n in shard.rejections.items():
                    m.invalid_events.labels(reason).inc(n)
                shard.rejections.clear()
            partition = str(shard.partition)
            if shard.max_event_time > 0:
                m.event_lag.labels(partition).set(now - shard.max_event_time)
                m.watermark.labels(partition).set(max(shard.watermark, 0))
            open_sessions += shard.sessions.open_sessions
            accounts += len(shard.sessions.accounts)
        m.open_sessions.set(open_sessions)
        m.tracked_accounts.set(accounts)

    def clocks(self) -> list[ShardClock]:
        """Every shard's event-time clock now: taken right after a batch ran, for its `deliver`."""
        return [ShardClock(shard.partition, shard.watermark) for shard in self.shards.values()]

    async def deliver(
        self,
        findings: Findings,
        keepalive: Callable[[], Awaitable[None]] | None = None,
        clocks: Sequence[ShardClock] | None = None,
    ) -> bool:
        """Hand the findings to every sink; True once all acknowledged.

        Retries with backoff while a sink fails, calling `keepalive` between tries (the Kafka
        source uses it to stay in its group with consumption paused). Returns False only when
        `give_up` is set (a shutdown deadline): the caller must then not commit.

        With an account registry: login attempts are checked against it before, the batch is
        recorded in it after, and the dormancy crossings its sweep finds are delivered too.
        The sweep goes as far as `clocks`, the shards' clocks when the batch was run (default:
        now, for a caller that runs and delivers one batch at a time).
        """
        accounts = self.accounts
        if accounts is not None and findings.account_activity:
            if await self._retrying(accounts.assess, findings, keepalive=keepalive) is GAVE_UP:
                return False
        if not await self._to_sinks(findings, keepalive):
            return False
        if accounts is None:
            return True
        if await self._retrying(accounts.record, findings, keepalive=keepalive, count=True) is GAVE_UP:
            return False
        while True:
            swept = await self._retrying(accounts.sweep, self._owned(clocks), keepalive=keepalive)
            if swept is GAVE_UP:
                return False
            if swept is None:
                return True
            if not await self._to_sinks(swept, keepalive):
                return False
            if await self._retrying(accounts.record, swept, keepalive=keepalive, count=True) is GAVE_UP:
                return False
            if not accounts.drain:
                return True

    def _owned(self, clocks: Sequence[ShardClock] | None) -> list[ShardClock]:
        """The clocks to sweep by: those given, of the partitions still owned (a rebalance may
        have revoked some since the batch ran), else the shards' clocks now."""
        if clocks is None:
            return self.clocks()
        return [clock for clock in clocks if clock.partition in self.shards]

    async def _retrying(
        self,
        step: Callable[..., Awaitable[Any]],
        *args: Any,
        keepalive: Callable[[], Awaitable[None]] | None = None,
        count: bool = False,
    ) -> Any:
        """Run a registry step until it succeeds, with the sinks' backoff (the store may be down);
        `GAVE_UP` if the shutdown deadline passed first."""
        delay = self.retry_initial
        while True:
            try:
                result = await step(*args)
            except Exception as error:
                self.metrics.sink_deliveries.labels(ACCOUNT_REGISTRY, "failed").inc()
                if self.give_up.is_set():
                    return GAVE_UP
                self.metrics.sink_deliveries.labels(ACCOUNT_REGISTRY, "retried").inc()
                log.warning(
                    "account registry unavailable, retrying",
                    step=getattr(step, "__name__", "step"),
                    error=f"{type(error).__name__}: {error}",
                    retry_in=delay,
                )
                await self._pause(delay, keepalive)
                delay = min(delay * 2, self.retry_max)
                continue
            if count:
                self.metrics.sink_deliveries.labels(ACCOUNT_REGISTRY, "delivered").inc()
            return result

    async def _pause(self, delay: float, keepalive: Callable[[], Awaitable[None]] | None) -> None:
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and not self.give_up.is_set():
            if keepalive is not None:
                await keepalive()
            else:
                await asyncio.sleep(min(0.2, delay))

    async def _to_sinks(self, findings: Findings, keepalive: Callable[[], Awaitable[None]] | None) -> bool:
        if not (findings.alerts or findings.flagged_sessions or findings.viewed_items or findings.dead_letters):
            return True
        for alert in findings.alerts:
            self.metrics.alerts.labels(alert.detector, alert.severity).inc()
        self.alerts_raised += len(findings.alerts)
        if self.gate is not None and findings.alerts:
            findings = self.gate.apply(findings)
            suppressed = self.metrics.alerts_suppressed
            for repeat in findings.repeats:
                suppressed.labels(repeat.detector, "grouped").inc()
            for alert, _ in findings.silenced:
                suppressed.labels(alert.detector, "silenced").inc()
        pending = list(self.sinks)
        delay = self.retry_initial
        while pending:
            results = await asyncio.gather(*(self._write(sink, findings) for sink in pending))
            pending = [sink for sink, ok in zip(pending, results) if not ok]
            if not pending:
                return True
            if self.give_up.is_set():
                return False
            for sink in pending:
                self.metrics.sink_deliveries.labels(sink.name, "retried").inc()
            log.warning("sink unavailable, retrying", sinks=[s.name for s in pending], retry_in=delay)
            await self._pause(delay, keepalive)
            delay = min(delay * 2, self.retry_max)
        return True

    async def _write(self, sink: Sink, findings: Findings) -> bool:
        started = time.perf_counter()
        try:
            await sink.write(findings)
        except Exception as error:  # a sink's failure must not stop the others
            self.metrics.sink_deliveries.labels(sink.name, "failed").inc()
            log.warning("sink write failed", sink=sink.name, error=f"{type(error).__name__}: {error}")
            return False
        self.metrics.sink_deliveries.labels(sink.name, "delivered").inc()
        self.metrics.sink_seconds.labels(sink.name).observe(time.perf_counter() - started)
        return True

    def commit_offsets(self) -> dict[int, int]:
        """Offsets safe to commit now, per partition (after `deliver` returned)."""
        offsets = {}
        for partition, shard in self.shards.items():
            offset = shard.commit_offset()
            if offset is not None:
                offsets[partition] = offset
        return offsets

    async def run_file(self, batches: Iterable[list[tuple[int, bytes]]], on_batch: Callable[[], None] | None = None) -> float | None:
        """Replay batches of one file through shard 0 to the end, then drain the reorder buffer.

        Returns the seconds from the call to the first batch processed (start-up latency).
        """
        started = time.perf_counter()
        first = None
        for batch in batches:
            findings = self.run_batch({0: batch})
            if first is None:
                first = time.perf_counter() - started
            await self.deliver(findings)
            if on_batch is not None:
                on_batch()
        await self.deliver(self.shard(0).drain())
        await self.flush_accounts()
        self.publish_counts()
        return first

    async def flush_accounts(self) -> None:
        """Write the account activity still buffered (`AccountLifecycle.flush`): before a checkpoint
        commits offsets, and at the end of a replay."""
        if self.accounts is not None:
            await self.accounts.flush()

    async def start_sinks(self) -> None:
        for sink in self.sinks:
            await sink.start()

    async def close_sinks(self) -> None:
        for sink in self.sinks:
            try:
                await sink.close()
            except Exception as error:
                log.warning("sink close failed", sink=sink.name, error=str(error))
