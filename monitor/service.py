"""The daemon's lifecycle: start the parts, loop over batches, stop cleanly on a signal.

Signals (after uvicorn's server.py): the first SIGTERM or SIGINT asks the loop to finish the
batch in hand, deliver it, commit and exit 0; a second one exits at once with status 1.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Awaitable, Callable

import structlog

from monitor.config import Settings
from monitor.pipeline import Pipeline
from monitor.sources.kafka import KafkaEventSource, PartitionListener

log = structlog.get_logger("monitor.service")


class Service:
    """The live monitor: Kafka source -> pipeline -> sinks -> commit, plus HTTP."""

    def __init__(
        self,
        settings: Settings,
        pipeline: Pipeline,
        source: KafkaEventSource,
        starters: list[Callable[[], Awaitable[None]]],
        closers: list[Callable[[], Awaitable[None]]],
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.source = source
        self.starters = starters
        self.closers = closers
        self.stop_requested = asyncio.Event()
        self.started = False
        self.assigned: set[int] = set()
        self.signals_seen = 0

    def readiness(self) -> tuple[bool, str]:
        if not self.started:
            return False, "starting: store and broker not connected yet"
        if not self.assigned:
            return False, "no partitions assigned yet"
        return True, f"{len(self.assigned)} partition(s) assigned"

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        self.signals_seen += 1
        if self.signals_seen > 1:
            log.warning("second signal: exiting at once", signal=sig.name)
            os._exit(1)
        log.info("signal received: draining, committing and stopping", signal=sig.name)
        self.stop_requested.set()
        self.pipeline.stopping.set()

    async def _assigned(self, partitions: list[int]) -> None:
        self.assigned.update(partitions)
        self.pipeline.assign(partitions)

    async def _revoked(self, partitions: list[int]) -> None:
        offsets = {p: o for p, o in self.pipeline.commit_offsets().items() if p in partitions}
        try:
            await self.source.commit(offsets)
        except Exception as error:
            log.warning("commit on revoke failed; the next owner re-reads from the last commit", error=str(error))
        self.assigned.difference_update(partitions)
        self.pipeline.revoke(partitions)

    async def run(self) -> int:
        self.install_signal_handlers()
        try:
            for start in self.starters:
                if self.stop_requested.is_set():
                    break
                await start()
            await self.source.start(PartitionListener(self._assigned, self._revoked))
        except Exception as error:
            log.error("start-up failed", error=f"{type(error).__name__}: {error}")
            await self._shutdown()
            return 1
        self.started = True
        log.info("monitor running", topic=self.settings.source.topic, group=self.settings.source.group_id)
        try:
            await self._loop()
        finally:
            await self._shutdown()
        return 0

    async def _loop(self) -> None:
        pipeline = self.pipeline
        metrics = pipeline.metrics
        engine = self.settings.engine
        grace = engine.allowed_lateness + engine.wall_clock_grace
        last_tick = 0.0
        while not self.stop_requested.is_set():
            batch = await self.source.batch()
            findings = pipeline.run_batch(batch)
            positions = {p: s._next_offset for p, s in pipeline.shards.items() if s._next_offset is not None}  # noqa: SLF001
            lags = self.source.lag(positions)
            for partition, lag in lags.items():
                metrics.consumer_lag.labels(str(partition)).set(lag)
            now = time.time()
            if now - last_tick >= 1.0:
                last_tick = now
                caught_up = [p for p in pipeline.shards if lags.get(p, 0) == 0 and not batch.get(p)]
                for partition in caught_up:
                    pipeline.shards[partition].advance(now - grace)
                    findings.extend(pipeline.shards[partition].take_findings())
            await pipeline.deliver(findings)
            await self._commit()

    async def _commit(self) -> None:
        offsets = self.pipeline.commit_offsets()
        if not offsets:
            return
        try:
            await self.source.commit(offsets)
        except Exception as error:
            self.pipeline.metrics.commits.labels("failed").inc()
            log.warning("offset commit failed; will retry with the next batch", error=str(error))
            return
        self.pipeline.metrics.commits.labels("succeeded").inc()
        self.pipeline.metrics.last_commit.set(time.time())

    async def _shutdown(self) -> None:
        await self._commit()
        try:
            await self.source.stop()
        except Exception as error:
            log.warning("consumer stop failed", error=str(error))
        for close in reversed(self.closers):
            try:
                await close()
            except Exception as error:
                log.warning("close failed", error=str(error))
        log.info("monitor stopped")
