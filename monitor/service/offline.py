"""One shard over one file: `replay` and tests (in-memory account registry), `demo` (PostgreSQL's).

Built the same way as the daemon's pipeline, so a replayed file raises exactly the alerts the
daemon would have raised live, dormancy crossings included (the sweep drains to the end of
each batch's watermark here, where the daemon works off a backlog a chunk per batch). Run a
file through it with `Pipeline.run_file`.
"""

from __future__ import annotations

from typing import Sequence

from monitor.accounts.lifecycle import AccountLifecycle
from monitor.accounts.memory import MemoryRegistry
from monitor.accounts.registry import AccountRegistry
from monitor.service.config import Settings
from monitor.places.geo import GeoServices
from monitor.support.metrics import Metrics
from monitor.delivery.pipeline import Pipeline
from monitor.service.shards import build_shard
from sinks.base import Sink


def build_offline_pipeline(
    settings: Settings,
    sinks: Sequence[Sink],
    metrics: Metrics,
    registry: AccountRegistry | None = None,
    gate=None,
    geo: GeoServices | None = None,
) -> Pipeline:
    """A pipeline over `registry` (a fresh in-memory one by default) and the alert `gate`, if
    any (`monitor.alerting.gate`); call `start_offline` next. `geo` defaults to one built from
    the settings (GeoIP readers, risky lists, shared networks)."""
    if geo is None:
        geo = GeoServices.from_settings(settings)
    lifecycle = AccountLifecycle(
        registry if registry is not None else MemoryRegistry(),
        settings.detectors.dormant_account,
        settings.detectors.dormant_account_login,
        drain=True,
        metrics=metrics,
        write_every=settings.accounts.write_every,
        write_limit=settings.accounts.write_limit,
    )
    return Pipeline(
        lambda partition: build_shard(settings, partition, geo=geo, restricted=lifecycle.restricted),
        sinks,
        metrics,
        gate=gate,
        accounts=lifecycle,
    )


async def start_offline(pipeline: Pipeline, roster: str | None = None, now: float | None = None):
    """Start the sinks, import `roster` (a CSV) if given, start the account lifecycle and
    build the one shard (partition 0 of 1). The roster's import report, or None.

    `now` is the import time (default: the wall clock), where a roster row without dates
    starts its idle clock. Raises `RosterError` if the roster cannot be read.
    """
    import time

    from monitor.accounts.registry import import_roster_file

    report = None
    if roster is not None:
        report = await import_roster_file(pipeline.accounts.registry, roster, time.time() if now is None else now)
    await pipeline.start_sinks()
    await pipeline.accounts.start()
    await pipeline.assigned([0], 1)
    return report
