"""The network stage's consumer: the login-outcomes topic through its own consumer group.

Beside the account shards, each `portal-monitor run` process joins a second consumer group
(`[network_stage] group_id`) on the repartition topic the shards publish their login outcomes
to (`sinks.login_outcomes`). Kafka gives each partition of that topic to one process; that
process runs its `NetworkStage` (`monitor.engine.network_stage`). Nothing but Kafka and
PostgreSQL coordinates it, the same way as the shards:

1. a batch of outcomes is read and run through the stages of its partitions;
2. what they found (source alerts, dead letters) goes to every sink, retried until acknowledged;
3. every `checkpoint.interval`, each stage's `snapshot()` and `commit_offset()` are written to
   PostgreSQL in one transaction (`shard_checkpoints`, under this group and topic), then the
   offsets are committed to Kafka.
A crash (kill -9) anywhere means the next owner restores the last checkpoint and re-reads from
its offset: the alerts found again keep their ids and the store keeps them once; the
redelivery window in the snapshot drops the outcomes it had already counted. On revocation the
stage is checkpointed once the batch in hand was delivered. Without a store, each delivered
batch commits its offsets and a new owner starts from empty state.

The loop is sequential (fetch, run, deliver, checkpoint): outcomes are a small share of the
events, so it needs none of the overlap of the shards' loop.
"""

from __future__ import annotations

import asyncio
import time
import msgspec
import structlog

from monitor.delivery.delivery import Delivery
from monitor.engine.findings import Findings
from monitor.engine.network_stage import NetworkStage, publish_stage_counts
from monitor.ingest.sources.kafka import KafkaEventSource, PartitionListener
from monitor.service.checkpoints import CheckpointStore
from monitor.service.config import Settings
from monitor.service.shards import build_network_stage

log = structlog.get_logger("monitor.service.network_stage")


class NetworkStageService:
    """Runs the network stages of the login-outcomes partitions this process is given."""

    def __init__(
        self,
        settings: Settings,
        delivery: Delivery,
        metrics,
        stop_requested: asyncio.Event,
        checkpoints: CheckpointStore | None = None,
    ) -> None:
        self.settings = settings
        self.delivery = delivery
        self.metrics = metrics
        self.stop_requested = stop_requested
        stage = settings.network_stage
        self.topic = stage.topic
        self.group_id = stage.group_id
        self.source = KafkaEventSource(
            settings.kafka, msgspec.structs.replace(settings.source, topic=stage.topic, group_id=stage.group_id)
        )
        self.stages: dict[int, NetworkStage] = {}
        self.checkpoints = checkpoints  # None: no state store, each delivered batch commits its offsets
        self.rebalance_wait = 5.0
        self.clean = True
        self._lock = asyncio.Lock()  # held while a batch is run and delivered, and by a revocation
        self._task: asyncio.Task | None = None
        self._last_checkpoint = time.monotonic()
        self._dirty = False

    async def start(self) -> None:
        await self.source.start(PartitionListener(self._assigned, self._revoked))
        self._task = asyncio.ensure_future(self._loop())
        log.info("network stage running", topic=self.topic, group=self.group_id)

    async def close(self) -> None:
        """Stop after the batch in hand; checkpoint and commit what was delivered."""
        self.stop_requested.set()
        if self._task is not None:
            try:
                await self._task
            except Exception as error:
                self.clean = False
                log.error("network stage loop failed", error=f"{type(error).__name__}: {error}")
        if self.clean:
            async with self._lock:
                await self._checkpoint_or_warn()
        try:
            await self.source.stop()
        except Exception as error:
            log.warning("network stage consumer stop failed", error=str(error))

    # -- partitions ---------------------------------------------------------------------------

    async def _assigned(self, partitions: list[int]) -> None:
        for partition in partitions:
            stage = build_network_stage(self.settings, partition)
            if self.checkpoints is not None:
                saved = await self._retry(lambda p=partition: self.checkpoints.load(p))  # type: ignore[union-attr]
                if saved is not None:
                    saved.restore(stage)
                    self.source.seek(partition, saved.offset)
                    log.info("network stage restored from checkpoint", partition=partition, offset=saved.offset, bytes=saved.size)
            self.stages[partition] = stage
        self.metrics.stage_partitions.set(len(self.stages))

    async def _revoked(self, partitions: list[int]) -> None:
        try:
            await asyncio.wait_for(self._lock.acquire(), timeout=self.rebalance_wait)
        except asyncio.TimeoutError:
            log.warning("network stage partitions revoked during a delivery: dropped without checkpoint; "
                        "the next owner re-reads them from the last one", partitions=partitions)
        else:
            try:
                if self.clean:
                    await self._checkpoint_or_warn(partitions)
            finally:
                self._lock.release()
        for partition in partitions:
            self.stages.pop(partition, None)
        self.metrics.stage_partitions.set(len(self.stages))

    async def _retry(self, attempt):
        delay = 0.5
        while True:
            try:
                return await attempt()
            except Exception as error:
                if self.stop_requested.is_set():
                    raise
                log.warning("network stage checkpoint load failed, retrying", error=f"{type(error).__name__}: {error}", retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30)

    # -- the loop -----------------------------------------------------------------------------

    async def _loop(self) -> None:
        lateness = self.settings.network_stage.allowed_lateness
        interval = self.settings.checkpoint.interval
        heard: dict[int, float] = {}  # partition -> when records last came (monotonic)
        while not self.stop_requested.is_set():
            batch = await self.source.batch()
            async with self._lock:
                findings = Findings()
                now = time.monotonic()
                for partition, records in batch.items():
                    stage = self.stages.get(partition)
                    if stage is not None and records:  # else revoked since the fetch
                        findings.extend(stage.process(records))
                        heard[partition] = now
                        self._dirty = True
                for partition, stage in self.stages.items():
                    # Quiet for the allowed lateness: nothing older is coming; run what is held.
                    if stage.buffered and now - heard.get(partition, 0.0) >= lateness:
                        findings.extend(stage.release())
                        self._dirty = True  # its offset moved past what was held
                publish_stage_counts(self.metrics, self.stages.values())
                if findings.alerts or findings.dead_letters:
                    delivered = await self.delivery.deliver_to_sinks(findings, keepalive=self._keepalive)
                    self.source.resume()  # the keepalive pauses the partitions while a sink is down
                    if not delivered:
                        self.clean = False  # shutdown deadline with findings undelivered: no commit
                        log.error("network stage: shutdown deadline passed with findings undelivered; not committing")
                        return
                if self.checkpoints is None and self._dirty:
                    await self._commit_or_warn()
                elif self._dirty and time.monotonic() - self._last_checkpoint >= interval:
                    await self._checkpoint_or_warn()

    async def _keepalive(self) -> None:
        await self.source.keepalive()

    async def _commit_or_warn(self) -> None:
        offsets = {p: s.commit_offset() for p, s in self.stages.items() if s.commit_offset() is not None}
        try:
            await self.source.commit(offsets)  # type: ignore[arg-type]
            self._dirty = False
        except Exception as error:
            log.warning("network stage commit failed; will commit with the next batch", error=f"{type(error).__name__}: {error}")
        finally:
            self.source.resume()

    async def _checkpoint_or_warn(self, partitions: list[int] | None = None) -> None:
        try:
            await self._checkpoint(partitions)
        except Exception as error:
            self.metrics.commits.labels("failed").inc()
            log.warning("network stage checkpoint failed; will retry", error=f"{type(error).__name__}: {error}")

    async def _checkpoint(self, partitions: list[int] | None = None) -> None:
        """State and offset of each stage (all by default) in one transaction, then the Kafka commit."""
        self.source.resume()  # a delivery's keepalive may have paused the partitions
        stages = {
            p: s for p, s in self.stages.items()
            if (partitions is None or p in partitions) and s.commit_offset() is not None
        }
        if not stages:
            return
        offsets = {p: s.commit_offset() for p, s in stages.items()}
        if self.checkpoints is not None:
            await self.checkpoints.save({p: (offsets[p], s) for p, s in stages.items()})
        await self.source.commit(offsets)  # type: ignore[arg-type]
        self.metrics.commits.labels("succeeded").inc()
        self._last_checkpoint = time.monotonic()
        if partitions is None:
            self._dirty = False
