"""One shard over one file: `replay` and tests (in-memory account registry), `demo` (PostgreSQL's).

Built from the same parts as the daemon (`Shards`, `Delivery`), so a replayed file raises
exactly the alerts the daemon would have raised live, dormancy crossings included (the sweep
drains to the end of each batch's watermark here, where the daemon works off a backlog a chunk
per batch). Run a file through it with `OfflinePipeline.run_file`.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable, Mapping, Sequence

from monitor.accounts.lifecycle import AccountLifecycle
from monitor.accounts.memory import MemoryRegistry
from monitor.accounts.registry import AccountRegistry
from monitor.service.config import Settings
from detectors.registry import location_detector_ids
from monitor.places.geo import GeoServices
from monitor.support.metrics import Metrics
from monitor.delivery.delivery import Delivery
from monitor.engine.findings import Findings
from monitor.engine.network_stage import NetworkStage, publish_stage_counts
from monitor.engine.shards import Shards
from monitor.support.retry import Backoff
from monitor.service.shards import build_network_stage, build_shard
from monitor.state.interning import pupil_ids
from sinks.base import Sink


def build_offline_pipeline(
    settings: Settings,
    sinks: Sequence[Sink],
    metrics: Metrics,
    registry: AccountRegistry | None = None,
    gate=None,
    geo: GeoServices | None = None,
) -> "OfflinePipeline":
    """A pipeline over `registry` (a fresh in-memory one by default) and the alert `gate`, if
    any (`monitor.alerting.gate`); call `start_offline` next. `geo` defaults to one built from
    the settings (GeoIP readers, risky lists, shared networks)."""
    if geo is None:
        geo = GeoServices.from_settings(settings, location_detector_ids())
    lifecycle = AccountLifecycle(
        registry if registry is not None else MemoryRegistry(),
        settings.detectors.dormant_account,
        settings.detectors.dormant_account_login,
        drain=True,
        metrics=metrics,
        write_every=settings.accounts.write_every,
        write_limit=settings.accounts.write_limit,
    )
    pupils = pupil_ids()  # one copy of each pupil id for every partition's shard
    shards = Shards(
        lambda partition: build_shard(settings, partition, geo=geo, restricted=lifecycle.restricted, pupil_ids=pupils),
        metrics,
    )
    # The same network stage `run` has per partition of the login-outcomes topic, fed in process.
    stage = build_network_stage(settings, 0) if settings.detectors.password_spray.enabled else None
    return OfflinePipeline(shards, Delivery(sinks, metrics, gate=gate, accounts=lifecycle), stage)


class OfflinePipeline:
    """One partition's shard and the delivery behind it, run one batch after the other: the
    daemon's loop without Kafka, checkpoints or overlap."""

    def __init__(self, shards: Shards, delivery: Delivery, stage: NetworkStage | None = None) -> None:
        self.shards = shards
        self.delivery = delivery
        self.metrics = shards.metrics
        # The network stage (`monitor.engine.network_stage`) run in process on the shard's login
        # outcomes; live, the outcomes go to the repartition topic instead.
        self.stage = stage

    @property
    def accounts(self):
        return self.delivery.accounts

    @property
    def events_seen(self) -> int:
        return self.shards.events_seen

    @property
    def alerts_raised(self) -> int:
        return self.delivery.alerts_raised

    @property
    def retry_initial(self) -> float:
        return self.delivery.backoff.initial

    @retry_initial.setter
    def retry_initial(self, seconds: float) -> None:
        self.delivery.backoff = self.delivery.backoff._replace(initial=seconds)

    def run_batch(self, batch: Mapping[int, list[tuple[int, bytes]]]) -> Findings:
        return self.shards.run(batch)

    async def deliver(self, findings: Findings) -> bool:
        return await self.delivery.deliver(findings, self.shards.clocks)

    async def run_file(self, batches: Iterable[list[tuple[int, bytes]]], on_batch: Callable[[], None] | None = None) -> float | None:
        """Replay batches of one file through shard 0 to the end, then drain the reorder buffer.

        Returns the seconds from the call to the first batch processed (start-up latency).
        """
        started = time.perf_counter()
        first = None
        for batch in batches:
            findings = self.through_stage(self.shards.run({0: batch}))
            if first is None:
                first = time.perf_counter() - started
            await self.deliver(findings)
            if on_batch is not None:
                on_batch()
        drained = self.through_stage(self.shards.drain())
        if self.stage is not None:
            drained.extend(self.stage.drain())
            publish_stage_counts(self.metrics, [self.stage])
        await self.deliver(drained)
        await self.delivery.flush_accounts()
        return first

    def through_stage(self, findings: Findings) -> Findings:
        """The batch's login outcomes run through the network stage, whose findings join the batch's."""
        outcomes = findings.login_outcomes
        if outcomes:
            findings.login_outcomes = []
            if self.stage is not None:
                findings.extend(self.stage.feed(outcomes))
        return findings

    async def flush_accounts(self) -> None:
        await self.delivery.flush_accounts()

    async def close(self) -> None:
        await self.delivery.close()


async def start_offline(pipeline: OfflinePipeline, roster: str | None = None, now: float | None = None):
    """Start the sinks, import `roster` (a CSV) if given, start the account lifecycle and
    build the one shard (partition 0 of 1). The roster's import report, or None.

    `now` is the import time (default: the wall clock), where a roster row without dates
    starts its idle clock. Raises `RosterError` if the roster cannot be read.
    """
    from monitor.accounts.registry import import_roster_file

    report = None
    if roster is not None:
        report = await import_roster_file(pipeline.accounts.registry, roster, time.time() if now is None else now)
    await pipeline.delivery.start()
    await pipeline.accounts.start()
    await pipeline.delivery.refresh_accounts(1)
    pipeline.shards.assign([0])
    return report
