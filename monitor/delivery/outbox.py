"""Outbox relays: each external sink publishes its own rows of `alert_outbox`, independently.

The PostgreSQL sink writes one outbox row per (alert, external sink) in the transaction that
stores the alert, so an alert survives a crash before publication. A relay, one per sink:

1. claims due rows (`FOR UPDATE SKIP LOCKED`, so several monitor processes can share the
   table): each claimed row gets a lease (`next_attempt_at = now() + lease`) and one more
   attempt, in one short transaction; no connection is held while publishing;
2. publishes them, each acknowledged by the far side (PUBACK, Kafka ack, HTTP 2xx);
3. marks the published ones delivered; a failed one gets `next_attempt_at` after an
   exponential backoff with jitter and its error in `last_error`.

A crash between 2 and 3 re-publishes after the lease (at-least-once; the alert_id is
deterministic, so the duplicate is recognisable). If only PostgreSQL is down at 3, the relay
keeps the published ids and marks them when it is back, without publishing them again.
A sink that is down delays only its own rows: not the other sinks, not the consumer.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Callable

import structlog

from monitor.support.metrics import Metrics
from monitor.support.retry import Backoff, retrying
from monitor.support.tasks import stop_task
from sinks.outbound import OutboundAlert, Publisher, outbound_from_json
from monitor.contract.settings import Section
from monitor.contract.durations import Seconds

log = structlog.get_logger("monitor.delivery.outbox")

CLAIM = """
UPDATE alert_outbox o
SET attempts = o.attempts + 1, next_attempt_at = now() + make_interval(secs => $3)
FROM (SELECT id FROM alert_outbox
      WHERE sink = $1 AND delivered_at IS NULL AND next_attempt_at <= now()
      ORDER BY next_attempt_at, id
      LIMIT $2
      FOR UPDATE SKIP LOCKED) due
WHERE o.id = due.id
RETURNING o.id, o.alert_id, o.payload::text AS payload, o.attempts
"""

MARK_DELIVERED = """
UPDATE alert_outbox SET delivered_at = now(), last_error = NULL
WHERE id = ANY($1::bigint[]) AND delivered_at IS NULL
"""

MARK_FAILED = """
UPDATE alert_outbox SET next_attempt_at = now() + make_interval(secs => $2), last_error = $3
WHERE id = $1 AND delivered_at IS NULL
"""

QUEUE = """
SELECT count(*) AS depth,
       COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 AS oldest
FROM alert_outbox WHERE sink = $1 AND delivered_at IS NULL
"""


class OutboxRelay:
    """Delivers one sink's outbox rows until closed."""

    def __init__(
        self,
        publisher: Publisher,
        pool: Callable[[], object],
        metrics: Metrics,
        settings: DeliverySettings,
        publish_timeout: float | None = None,
    ) -> None:
        self.publisher = publisher
        self.sink = publisher.name
        self._pool = pool
        # Rows a publisher refused wait longer each attempt, with jitter so relays do not wake in step.
        self._row_backoff = Backoff(settings.retry_initial, settings.retry_max, jitter=True)
        self.metrics = metrics
        self.settings = settings
        # the publisher's own timeout applies first; this one only bounds a stuck publish
        self.publish_timeout = publish_timeout or float(getattr(publisher, "timeout", 30.0)) + 5.0
        # publishes in flight at once: the publisher's own bound (MQTT's in-flight window), else 16
        self._slots = asyncio.Semaphore(int(getattr(publisher, "concurrency", 16)))
        self.wake = asyncio.Event()
        self._published: set[int] = set()  # published, not yet marked (PostgreSQL was down)
        self._task: asyncio.Task | None = None
        self._gauges_at = 0.0
        self._failing = False

    async def start(self) -> None:
        await self.publisher.start()
        self._task = asyncio.create_task(self._run(), name=f"outbox-relay-{self.sink}")

    async def close(self) -> None:
        await stop_task(self._task)
        self._task = None
        await self.publisher.close()

    async def _run(self) -> None:
        store_backoff = Backoff(self.settings.retry_initial, self.settings.retry_max)
        while True:
            self.wake.clear()  # before the claim: a wake-up during the round is not lost
            # PostgreSQL unreachable: wait and try again
            delivered = await retrying(self.run_once, what="outbox", backoff=store_backoff, log=log, sink=self.sink)
            if delivered < self.settings.batch_size:
                try:
                    await asyncio.wait_for(self.wake.wait(), self.settings.poll_interval)
                except asyncio.TimeoutError:
                    pass

    async def run_once(self) -> int:
        """One round: mark what was published, claim due rows, publish, record; rows handled."""
        pool = self._pool()
        if pool is None:
            raise ConnectionError("store not connected yet")
        if self._published:
            await pool.execute(MARK_DELIVERED, list(self._published))
            self._published.clear()
        rows = await pool.fetch(CLAIM, self.sink, self.settings.batch_size, float(self.settings.lease))
        if rows:
            rows = sorted(rows, key=lambda r: r["id"])
            results = await asyncio.gather(*(self._publish(row) for row in rows))
            delivered = [row["id"] for row, error in zip(rows, results) if error is None]
            failed = [
                (row["id"], self._row_backoff.after(row["attempts"]), error)
                for row, error in zip(rows, results)
                if error is not None
            ]
            self._published.update(delivered)
            await pool.execute(MARK_DELIVERED, delivered)
            self._published.clear()
            if failed:
                await pool.executemany(MARK_FAILED, failed)
            self._report(len(delivered), failed)
        now = time.monotonic()
        if rows or now - self._gauges_at >= 1.0:
            self._gauges_at = now
            queue = await pool.fetchrow(QUEUE, self.sink)
            self.metrics.sink_queue_depth.labels(self.sink).set(queue["depth"])
            self.metrics.sink_oldest_undelivered.labels(self.sink).set(queue["oldest"])
        return len(rows)

    async def _publish(self, row) -> str | None:
        """Publish one row; None when acknowledged, else the error as text."""
        counters = self.metrics.sink_deliveries
        if row["attempts"] > 1:
            counters.labels(self.sink, "retried").inc()
        if row["id"] in self._published:
            return None
        try:
            alert: OutboundAlert = outbound_from_json(row["payload"].encode())
            async with self._slots:
                started = time.perf_counter()
                await asyncio.wait_for(self.publisher.publish(alert), self.publish_timeout)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            counters.labels(self.sink, "failed").inc()
            return f"{type(error).__name__}: {error}"[:500] or type(error).__name__
        counters.labels(self.sink, "delivered").inc()
        self.metrics.sink_seconds.labels(self.sink).observe(time.perf_counter() - started)
        return None

    def _report(self, delivered: int, failed: list) -> None:
        if failed and not self._failing:
            self._failing = True
            log.warning("sink failing; alerts stay in the outbox and are retried", sink=self.sink, failed=len(failed), error=failed[0][2])
        elif delivered and not failed and self._failing:
            self._failing = False
            log.info("sink delivering again", sink=self.sink)


class DeliverySettings(Section):
    """The outbox relays: one per external sink, reading `alert_outbox` rows in PostgreSQL."""

    retry_initial: Seconds = Seconds(1)
    retry_max: Seconds = Seconds(300)
    batch_size: int = 100
    poll_interval: Seconds = Seconds(1)
    lease: Seconds = Seconds(120)
    """A claimed row is re-offered to any monitor process after this long without an answer."""
