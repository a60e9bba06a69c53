"""The daemon's lifecycle: start the parts, loop over batches, stop cleanly on a signal.

Signals (after uvicorn's server.py): the first SIGTERM or SIGINT asks the loop to finish the
batch in hand, deliver it, checkpoint, commit and exit 0. If a sink is down, delivery is
retried until `service.shutdown_timeout`; then the monitor exits 1 without committing, and the
batch is read again on restart. A second signal exits at once with status 1.

The order of a checkpoint and what a crash at each step means is in `monitor.service.checkpoints`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from typing import Awaitable, Callable, NamedTuple, Sequence

import structlog

from monitor.service.checkpoints import CheckpointStore
from monitor.service.config import Settings
from monitor.delivery.delivery import Delivery
from monitor.engine.findings import Findings, ShardClock
from monitor.engine.shards import Shards
from monitor.support.retry import Backoff, retrying
from monitor.ingest.sources.kafka import KafkaEventSource, PartitionListener

log = structlog.get_logger("monitor.service.lifecycle")


class Part(NamedTuple):
    """A part of the daemon with a lifetime: started in the order given, closed in reverse
    (only the parts that started), a failure to close logged, never raised."""

    name: str
    start: Callable[[], Awaitable[object]]
    close: Callable[[], Awaitable[object]]


class Service:
    """The live monitor: fetch (Kafka) -> run (shards) -> deliver (sinks) -> checkpoint -> commit."""

    def __init__(
        self,
        settings: Settings,
        shards: Shards,
        delivery: Delivery,
        source: KafkaEventSource,
        parts: Sequence[Part],
        checkpoints: CheckpointStore | None = None,
        clock: Callable[[], float] = time.time,
        stop: asyncio.Event | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock  # the wall clock that advances quiet shards (a parameter so tests can move it)
        self.shards = shards
        self.delivery = delivery
        self.source = source
        self.parts = list(parts)
        self.checkpoints = checkpoints  # None: no state store, each delivery commits its own offsets
        self._resources = contextlib.AsyncExitStack()  # the started parts, to close in reverse
        self.stop_requested = stop if stop is not None else asyncio.Event()  # parts may wait on it
        self.started = False
        self.assigned: set[int] = set()
        self.signals_seen = 0
        self.on_reload: list[Callable[[], object]] = []  # run on SIGHUP, in the loop's thread
        self._in_hand = False  # a batch was run and its delivery not started yet
        self._abandoned = False  # a delivery gave up at the shutdown deadline: nothing more may be committed
        self.clean_exit = True
        self._last_checkpoint = time.monotonic()
        self._events_since_checkpoint = 0
        self._checkpointed_at: dict[int, float] = {}
        self._delivery: asyncio.Future[bool] | None = None  # the batch being delivered, beside the loop
        self._delivery_started = 0.0  # time.monotonic() when it started
        # How long a rebalance waits for the delivery in flight before giving the partitions up
        # without a checkpoint: a healthy delivery takes milliseconds; a sink outage much longer.
        self.rebalance_wait = 5.0
        self._fetching = False  # the loop is polling the consumer now

    # -- probes and signals -------------------------------------------------------------------

    def readiness(self) -> tuple[bool, str]:
        if not self.started:
            return False, "starting: store and broker not connected yet"
        if not self.assigned:
            return False, "no partitions assigned yet"
        stalled = self.stalled_for()
        if stalled > self.settings.service.stall_after:
            failing = ", ".join(sorted(self.delivery.failing)) or "none reported"
            return False, f"stalled: a batch's delivery unacknowledged for {stalled:.0f} s (failing: {failing})"
        return True, f"{len(self.assigned)} partition(s) assigned"

    def stalled_for(self) -> float:
        """Seconds the delivery in flight has been waiting for its acknowledgements (0: none)."""
        if self._delivery is None or self._delivery.done():
            return 0.0
        return time.monotonic() - self._delivery_started

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self._on_reload)

    def _on_reload(self) -> None:
        log.info("SIGHUP: reloading GeoIP databases and network lists")
        for reload in self.on_reload:
            try:
                reload()
            except Exception as error:  # a bad file must not stop the monitor
                log.warning("reload failed; keeping what was loaded", error=f"{type(error).__name__}: {error}")

    def _on_signal(self, sig: signal.Signals) -> None:
        self.signals_seen += 1
        if self.signals_seen > 1:
            log.warning("second signal: exiting at once", signal=sig.name)
            os._exit(1)
        timeout = self.settings.service.shutdown_timeout
        log.info("signal received: draining, committing and stopping", signal=sig.name, timeout=timeout)
        self.stop_requested.set()
        asyncio.get_running_loop().call_later(timeout, self.delivery.give_up.set)

    @property
    def undelivered(self) -> bool:
        """Findings are in hand or in delivery, not acknowledged by every sink yet."""
        return self._in_hand or self._delivery is not None or self._abandoned

    # -- partitions ---------------------------------------------------------------------------

    async def _assigned(self, partitions: list[int]) -> None:
        await self._await_delivery(self.rebalance_wait)  # the registry refresh then sees it
        await self.delivery.refresh_accounts(self.source.partition_count())
        self.shards.assign(partitions)
        for partition in partitions:
            if self.checkpoints is None:
                continue
            saved = await retrying(
                lambda p=partition: self.checkpoints.load(p),  # type: ignore[union-attr]
                what="load checkpoint", backoff=Backoff(0.5, 30.0), log=log, give_up=self.stop_requested.is_set,
            )
            if saved is None:
                log.info("partition assigned without checkpoint", partition=partition)
                continue
            saved.restore(self.shards[partition])
            self.source.seek(partition, saved.offset)
            self._checkpointed_at[partition] = time.time()
            log.info(
                "partition restored from checkpoint",
                partition=partition, offset=saved.offset, bytes=saved.size, deltas=len(saved.deltas),
            )
        self.assigned.update(partitions)

    async def _revoked(self, partitions: list[int]) -> None:
        await self._await_delivery(self.rebalance_wait)
        if self.undelivered:
            log.warning(
                "partitions revoked with findings undelivered: dropped without checkpoint; "
                "the next owner re-reads them from the last checkpoint",
                partitions=partitions,
            )
        else:
            try:
                await self._checkpoint(partitions)
            except Exception as error:
                log.warning("checkpoint on revoke failed; the next owner resumes from the previous one", error=str(error))
        self.assigned.difference_update(partitions)
        if self.checkpoints is not None:
            self.checkpoints.forget(partitions)  # the next owner writes them now
        self.shards.revoke(partitions)
        for partition in partitions:
            self._checkpointed_at.pop(partition, None)

    async def _start_retrying(self, what: str, start: Callable[[], Awaitable]) -> None:
        """Run a start-up step, retrying with the one policy (each failure logged with servers,
        timeout and cause) while a broker cannot be reached, as the store's connection is;
        other failures end the start."""
        from monitor.ingest.kafka_client import KafkaUnreachable

        async def wait(delay: float) -> None:
            try:
                await asyncio.wait_for(self.stop_requested.wait(), timeout=delay)
            except asyncio.TimeoutError:
                pass

        await retrying(start, what=what, backoff=Backoff(0.5, 30.0), log=log, give_up=self.stop_requested.is_set,
                       wait=wait, retriable=lambda error: isinstance(error, KafkaUnreachable))

    # -- the loop -----------------------------------------------------------------------------

    async def run(self) -> int:
        self.install_signal_handlers()
        try:
            for part in self.parts:
                if self.stop_requested.is_set():
                    break
                await self._start_retrying(f"starting the {part.name}", part.start)
                self._resources.push_async_callback(self._close, part)
            await self._start_retrying(
                "starting the Kafka consumer", lambda: self.source.start(PartitionListener(self._assigned, self._revoked))
            )
        except Exception as error:
            if self.stop_requested.is_set():  # a signal while still connecting: a clean stop
                log.info("stopped before start-up completed", waiting_for=f"{type(error).__name__}: {error}")
                await self._shutdown()
                return 0
            log.error("start-up failed", error=f"{type(error).__name__}: {error}")
            await self._shutdown()
            return 1
        self.started = True
        log.info("monitor running", topic=self.settings.source.topic, group=self.settings.source.group_id)
        try:
            await self._loop()
        finally:
            await self._shutdown()
        return 0 if self.clean_exit else 1

    async def _loop(self) -> None:
        """Fetch and run batch N+1 while batch N is being delivered; deliveries stay in order.

        Running a batch is CPU in this process; delivering it is mostly waiting on PostgreSQL
        (sinks, account registry) and the other sinks. So the delivery of a batch is a task, and
        the loop fetches and runs the next batch meanwhile; before that batch's delivery starts,
        the previous one must have been acknowledged (the registry's view of the accounts must
        include it). At most one batch is in delivery and one in hand. A checkpoint, a rebalance
        and shutdown first wait for the delivery in flight, so a snapshot never holds a batch
        whose findings are not acknowledged.
        """
        shards = self.shards
        metrics = shards.metrics
        engine = self.settings.engine
        grace = engine.allowed_lateness + engine.wall_clock_grace
        last_tick = 0.0
        batch_number = 0
        while not self.stop_requested.is_set():
            self._fetching = True
            try:
                batch = await self.source.batch()
            finally:
                self._fetching = False
            batch_number += 1
            # Context for anything logged while this batch is in hand (retries, failures).
            structlog.contextvars.bind_contextvars(batch=batch_number, partitions=sorted(batch))
            self._in_hand = True
            findings = shards.run(batch)
            self._events_since_checkpoint += sum(len(records) for records in batch.values())
            lags = self.source.lag(shards.positions())
            for partition, lag in lags.items():
                metrics.consumer_lag.labels(str(partition)).set(lag)
            now = self.clock()
            if now - last_tick >= 1.0:
                last_tick = now
                for partition, shard in shards.items():
                    if lags.get(partition, 0) == 0 and not batch.get(partition):
                        shard.advance(now - grace)  # quiet and caught up: the wall clock moves time
                        findings.extend(shard.take_findings())
                for partition, at in self._checkpointed_at.items():
                    metrics.checkpoint_age.labels(str(partition)).set(time.time() - at)
            offsets = shards.commit_offsets() if self.checkpoints is None else None
            clocks = shards.clocks()
            if not await self._settle():
                return
            self._delivery = asyncio.ensure_future(self._deliver(findings, clocks, offsets))
            self._delivery_started = time.monotonic()
            self._in_hand = False
            if self._checkpoint_due():
                if not await self._settle():
                    return
                await self._checkpoint_or_warn()
        await self._settle()

    async def _deliver(self, findings: Findings, clocks: list[ShardClock], offsets: dict[int, int] | None) -> bool:
        """One batch's delivery (a task beside the loop); without checkpoints, then its commit."""
        delivered = await self.delivery.deliver(findings, lambda: self._owned(clocks), keepalive=self._keepalive)
        if delivered and offsets:
            try:
                await self.source.commit(offsets)
                self.shards.metrics.commits.labels("succeeded").inc()
                self.shards.metrics.last_commit.set(time.time())
            except Exception as error:
                self.shards.metrics.commits.labels("failed").inc()
                log.warning("commit failed; will commit with the next batch", error=f"{type(error).__name__}: {error}")
        return delivered

    def _owned(self, clocks: list[ShardClock]) -> list[ShardClock]:
        """The batch's clocks of the partitions still owned: a rebalance may have revoked some
        since the batch ran, and their sweep is the next owner's."""
        return [clock for clock in clocks if clock.partition in self.shards]

    async def _keepalive(self) -> None:
        """Between delivery retries: keep the consumer in its group, unless the loop is fetching
        (it polls the consumer itself then, and will wait for this delivery next)."""
        if self._fetching:
            await asyncio.sleep(0.2)
        else:
            await self.source.keepalive()

    async def _settle(self) -> bool:
        """Wait for the delivery in flight, if any; False once a delivery gave up (shutdown deadline)."""
        delivery = self._delivery
        if delivery is not None:
            delivered = await asyncio.shield(delivery)  # a rebalance callback may wait for it too
            if self._delivery is not delivery:
                return not self._abandoned  # the other waiter settled it
            self._delivery = None
            self.source.resume()
            if not delivered:
                self._abandoned = True
                self.clean_exit = False
                log.error("shutdown deadline passed with findings undelivered; not committing: "
                          "they are read again on restart")
        return not self._abandoned

    async def _await_delivery(self, timeout: float) -> None:
        """Settle the delivery in flight if it finishes within `timeout`; else leave it running."""
        delivery = self._delivery
        if delivery is not None:
            await asyncio.wait({delivery}, timeout=timeout)
            if delivery.done():
                await self._settle()

    def _checkpoint_due(self) -> bool:
        if self.checkpoints is None:
            return False  # no state store: each delivery commits its own batch's offsets
        cp = self.settings.checkpoint
        return (
            time.monotonic() - self._last_checkpoint >= cp.interval
            or self._events_since_checkpoint >= cp.every_events
        )

    async def _checkpoint_or_warn(self) -> None:
        try:
            await self._checkpoint()
        except Exception as error:
            self.shards.metrics.commits.labels("failed").inc()
            log.warning("checkpoint or commit failed; will retry after the next batch", error=f"{type(error).__name__}: {error}")

    async def _checkpoint(self, partitions: list[int] | None = None) -> None:
        """Write state+offset for the partitions (all by default), then commit those offsets."""
        shards = {
            p: s for p, s in self.shards.items()
            if (partitions is None or p in partitions) and s.commit_offset() is not None
        }
        if not shards:
            return
        offsets = {p: s.commit_offset() for p, s in shards.items()}
        await self.delivery.flush_accounts()  # the registry first: committed offsets never run ahead of it
        if self.checkpoints is not None:
            metrics = self.shards.metrics
            started = time.perf_counter()
            written = await self.checkpoints.save({p: (offsets[p], s) for p, s in shards.items()})
            metrics.checkpoint_seconds.observe(time.perf_counter() - started)
            for piece in written.values():
                metrics.checkpoints_written.labels(piece.kind).inc()
                metrics.checkpoint_bytes.labels(piece.kind).inc(piece.size)
            now = time.time()
            for p in shards:
                self._checkpointed_at[p] = now
        await self.source.commit(offsets)  # type: ignore[arg-type]
        self.shards.metrics.commits.labels("succeeded").inc()
        self.shards.metrics.last_commit.set(time.time())
        self._last_checkpoint = time.monotonic()
        self._events_since_checkpoint = 0

    async def _shutdown(self) -> None:
        delivery = self._delivery
        if delivery is not None and not delivery.done():
            delivery.cancel()  # the loop failed with a delivery in flight: it is read again on restart
            self._abandoned = True
            self.clean_exit = False
        if self.started and not self.undelivered:
            await self._checkpoint_or_warn()
        try:
            await self.source.stop()
        except Exception as error:
            log.warning("consumer stop failed", error=str(error))
        await self._resources.aclose()
        log.info("monitor stopped", clean=self.clean_exit)

    @staticmethod
    async def _close(part: Part) -> None:
        try:
            await part.close()
        except Exception as error:
            log.warning("close failed", part=part.name, error=f"{type(error).__name__}: {error}")
