"""Periodic work of the live daemon beside the data path: silences, verdict totals, retention.

Each job runs on its own interval in its own task; a failure (PostgreSQL away) is logged and
the job runs again next time. Nothing here is on the hot path.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

import structlog

from monitor.support.tasks import stop_task

from monitor.alerting.gate import AlertGate, Silence

log = structlog.get_logger("monitor.service.housekeeping")


class Periodic:
    """Runs `job()` every `interval` seconds until closed (the first run right away)."""

    def __init__(self, name: str, interval: float, job: Callable[[], Awaitable[None]]) -> None:
        self.name = name
        self.interval = interval
        self.job = job
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def _run(self) -> None:
        while True:
            try:
                await self.job()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("periodic job failed; will run again", job=self.name, error=f"{type(error).__name__}: {error}")
            await asyncio.sleep(self.interval)

    async def close(self) -> None:
        await stop_task(self._task)
        self._task = None


async def load_silences(pool, gate: AlertGate, configured: list[Silence]) -> None:
    """Give the gate the silences of the config file plus those stored by `silences add`."""
    rows = await pool.fetch(
        "SELECT silence_id, account_id, detector, network::text AS network, starts_at, expires_at, reason FROM silences"
    )
    stored = [
        Silence(
            silence_id=r["silence_id"],
            account_id=r["account_id"],
            detector=r["detector"],
            network=r["network"],
            starts=r["starts_at"].timestamp(),
            expires=r["expires_at"].timestamp(),
            reason=r["reason"],
        )
        for r in rows
    ]
    gate.set_silences([*configured, *stored])


async def warm_gate(pool, gate: AlertGate) -> int:
    """Seed the gate with the latest alert per (detector, account or source) within the cool-down horizon
    of the newest stored alert, so repeats right after a restart are still grouped."""
    rows = await pool.fetch(
        """SELECT DISTINCT ON (detector, subject) detector, subject, alert_id, ts, severity
           FROM (SELECT detector, CASE WHEN account_id = '' AND source IS NOT NULL
                                       THEN 'source:' || source ELSE account_id END AS subject,
                        alert_id, ts, severity
                 FROM alerts
                 WHERE status <> 'silenced'
                   AND ts >= (SELECT max(ts) FROM alerts) - make_interval(secs => $1)) AS recent
           ORDER BY detector, subject, ts DESC""",
        float(gate.horizon),
    )
    for r in rows:
        gate.remember(r["detector"], r["subject"], r["alert_id"], r["ts"].timestamp(), r["severity"])
    return len(rows)
