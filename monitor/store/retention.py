"""Retention: session timelines and closed alerts are purged once older than the period kept.

- a flagged session (with its timeline, `session_items`) once its last activity is older than
  the period, unless an alert naming it is still open or acknowledged (under investigation);
- a resolved alert once resolved longer ago than the period, a silenced one once raised
  longer ago (their actions, repeats and delivery records go with them);
- a silence once expired longer ago than the period.

Deletes run in chunks of at most `chunk` rows, each its own short transaction, so a large
purge never holds long locks on tables the monitor writes.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from monitor.contract.settings import Section
from monitor.contract.durations import Seconds

PURGE_SESSIONS = """
DELETE FROM flagged_sessions WHERE session_id IN (
    SELECT fs.session_id FROM flagged_sessions fs
    WHERE fs.last_activity < $1
      AND NOT EXISTS (SELECT 1 FROM alerts a
                      WHERE a.alert_id = ANY(fs.alert_ids) AND a.status IN ('open', 'acknowledged'))
    LIMIT $2)
"""

PURGE_ALERTS = """
DELETE FROM alerts WHERE alert_id IN (
    SELECT alert_id FROM alerts
    WHERE (status = 'resolved' AND resolved_at < $1) OR (status = 'silenced' AND ts < $1)
    LIMIT $2)
"""

PURGE_SILENCES = "DELETE FROM silences WHERE silence_id IN (SELECT silence_id FROM silences WHERE expires_at < $1 LIMIT $2)"


PURGE_PUPIL_ACCESS = """
DELETE FROM pupil_access WHERE ctid IN (SELECT ctid FROM pupil_access WHERE day < $1 LIMIT $2)
"""


async def purge_pupil_access(pool, keep_for: float, chunk: int = 1000, now: datetime | None = None, pause: float = 0.05) -> int:
    """Delete the rows of `pupil_access` of days older than `keep_for` (its own retention, 400 days by default)."""
    cutoff = ((now or datetime.now(timezone.utc)) - timedelta(seconds=keep_for)).date()
    total = 0
    while True:
        status = await pool.execute(PURGE_PUPIL_ACCESS, cutoff, chunk)
        deleted = int(status.split()[-1])
        total += deleted
        if deleted < chunk:
            return total
        await asyncio.sleep(pause)


async def purge(pool, keep_for: float, chunk: int = 1000, now: datetime | None = None, pause: float = 0.05) -> dict[str, int]:
    """Delete what is past retention; the number of rows deleted per kind."""
    cutoff = (now or datetime.now(timezone.utc)) - timedelta(seconds=keep_for)
    purged = {}
    for kind, statement in (("sessions", PURGE_SESSIONS), ("alerts", PURGE_ALERTS), ("silences", PURGE_SILENCES)):
        total = 0
        while True:
            status = await pool.execute(statement, cutoff, chunk)
            deleted = int(status.split()[-1])
            total += deleted
            if deleted < chunk:
                break
            await asyncio.sleep(pause)
        purged[kind] = total
    return purged


class RetentionSettings(Section):
    """Session timelines and resolved alerts are purged this long after they ended."""

    enabled: bool = True
    keep_for: Seconds = Seconds(400 * 86400)
    interval: Seconds = Seconds(3600)
    chunk: int = 1000
