"""Delivery: a batch's findings to every sink and to the account registry, retrying until all
acknowledged. The caller commits offsets only after `deliver` returned True.

Order of a batch, and what a crash at each step means:
1. the account registry checks the batch's login attempts (dormant or disabled accounts);
2. the alert gate (`monitor.alerting.gate`) groups repeats and applies silences; the findings go
   to every sink at once, and the sinks that failed are tried again with backoff (never dropped);
3. the registry records the batch, and its sweep's dormancy crossings are delivered the same way
   (`monitor.accounts.lifecycle`);
4. only then the caller commits (`monitor.service.lifecycle`, `monitor.service.checkpoints`).
A crash before 4 re-reads the batch on restart; the sinks are idempotent (alert_id,
session_id), so the redelivery creates nothing twice.

The retries keep the Kafka consumer in its group: between tries the caller's `keepalive` runs
instead of a plain sleep. Retrying the sinks as a set (only the failed ones again) is the one
loop here that `monitor.support.retry.retrying` does not run; its delays come from the same
`Backoff`.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Sequence

import structlog

from monitor.engine.findings import Findings, ShardClock
from monitor.support.metrics import Metrics
from monitor.support.retry import Backoff, GaveUp, retrying
from sinks.base import Sink

if TYPE_CHECKING:
    from monitor.accounts.lifecycle import AccountLifecycle
    from monitor.alerting.gate import AlertGate

log = structlog.get_logger("monitor.delivery")
ACCOUNT_REGISTRY = "account_registry"  # its writes are counted and retried like a sink's

Keepalive = Callable[[], Awaitable[None]]


class Delivery:
    """Findings to sinks (through the alert gate) and to the account registry, with retries."""

    def __init__(
        self,
        sinks: Sequence[Sink],
        metrics: Metrics,
        backoff: Backoff = Backoff(0.5, 30.0),
        gate: "AlertGate | None" = None,
        accounts: "AccountLifecycle | None" = None,
    ) -> None:
        self.sinks = list(sinks)
        self.metrics = metrics
        self.backoff = backoff
        self.gate = gate
        self.accounts = accounts
        if accounts is not None:
            metrics.add_sinks([ACCOUNT_REGISTRY])
        self.give_up = asyncio.Event()  # set when a shutdown deadline passes
        self.alerts_raised = 0
        self.failing: set[str] = set()  # sinks (and the registry) whose last attempt failed, for /readyz

    async def start(self) -> None:
        for sink in self.sinks:
            await sink.start()

    async def close(self) -> None:
        for sink in self.sinks:
            try:
                await sink.close()
            except Exception as error:
                log.warning("sink close failed", sink=sink.name, error=str(error))

    async def refresh_accounts(self, partitions_total: int | None) -> None:
        """New partitions: reload what the account registry lends the shards (before they are built)."""
        if self.accounts is not None:
            await self._registry(self.accounts.refresh, partitions_total)

    async def flush_accounts(self) -> None:
        """Write the account activity still buffered: before a checkpoint commits offsets, and
        at the end of a replay."""
        if self.accounts is not None:
            await self.accounts.flush()

    async def deliver(
        self,
        findings: Findings,
        clocks: Callable[[], Sequence[ShardClock]],
        keepalive: Keepalive | None = None,
    ) -> bool:
        """Hand the findings to every sink; True once all acknowledged, False only when
        `give_up` is set (a shutdown deadline): the caller must then not commit.

        With an account registry: login attempts are checked against it before, the batch is
        recorded in it after, and the dormancy crossings its sweep finds (up to `clocks()`, the
        clocks of the batch's shards still owned) are delivered too.
        """
        accounts = self.accounts
        try:
            if accounts is not None and findings.account_activity:
                await self._registry(accounts.assess, findings, keepalive=keepalive)
            if not await self._to_sinks(findings, keepalive):
                return False
            if accounts is None:
                return True
            await self._registry(accounts.record, findings, keepalive=keepalive, count=True)
            while True:
                swept = await self._registry(accounts.sweep, list(clocks()), keepalive=keepalive)
                if swept is None:
                    return True
                if not await self._to_sinks(swept, keepalive):
                    return False
                await self._registry(accounts.record, swept, keepalive=keepalive, count=True)
                if not accounts.drain:
                    return True
        except GaveUp:
            return False

    async def deliver_to_sinks(self, findings: Findings, keepalive: Keepalive | None = None) -> bool:
        """Hand findings that concern no account registry (the network stage's alerts and dead
        letters) to every sink, retrying like `deliver`; False only when `give_up` is set."""
        return await self._to_sinks(findings, keepalive)

    async def _registry(self, step: Callable[..., Awaitable[Any]], *args: Any,
                        keepalive: Keepalive | None = None, count: bool = False) -> Any:
        """A registry step (the store may be down), retried with the sinks' backoff."""
        failed = self.metrics.sink_deliveries.labels(ACCOUNT_REGISTRY, "failed")
        retried = self.metrics.sink_deliveries.labels(ACCOUNT_REGISTRY, "retried")

        def on_failure(_error: Exception) -> None:
            self.failing.add(ACCOUNT_REGISTRY)
            failed.inc()
            if not self.give_up.is_set():
                retried.inc()

        result = await retrying(
            lambda: step(*args), what="account registry", backoff=self.backoff, log=log,
            give_up=self.give_up.is_set, wait=lambda delay: self._pause(delay, keepalive),
            on_failure=on_failure, step=getattr(step, "__name__", "step"),
        )
        self.failing.discard(ACCOUNT_REGISTRY)
        if count:
            self.metrics.sink_deliveries.labels(ACCOUNT_REGISTRY, "delivered").inc()
        return result

    async def _pause(self, delay: float, keepalive: Keepalive | None) -> None:
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and not self.give_up.is_set():
            if keepalive is not None:
                await keepalive()
            else:
                await asyncio.sleep(min(0.2, delay))

    async def _to_sinks(self, findings: Findings, keepalive: Keepalive | None) -> bool:
        if not findings.for_sinks():
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
        failures = 0
        while pending:
            results = await asyncio.gather(*(self._write(sink, findings) for sink in pending))
            pending = [sink for sink, ok in zip(pending, results) if not ok]
            if not pending:
                return True
            if self.give_up.is_set():
                return False
            for sink in pending:
                self.metrics.sink_deliveries.labels(sink.name, "retried").inc()
            failures += 1
            delay = self.backoff.after(failures)
            log.warning("sink unavailable, retrying", sinks=[s.name for s in pending], retry_in=delay)
            await self._pause(delay, keepalive)
        return True

    async def _write(self, sink: Sink, findings: Findings) -> bool:
        started = time.perf_counter()
        try:
            await sink.write(findings)
        except Exception as error:  # a sink's failure must not stop the others
            self.metrics.sink_deliveries.labels(sink.name, "failed").inc()
            self.failing.add(sink.name)
            log.warning("sink write failed", sink=sink.name, error=f"{type(error).__name__}: {error}")
            return False
        self.failing.discard(sink.name)
        self.metrics.sink_deliveries.labels(sink.name, "delivered").inc()
        self.metrics.sink_seconds.labels(sink.name).observe(time.perf_counter() - started)
        return True
