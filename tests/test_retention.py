"""Retention on a real store: old session timelines and old resolved alerts go, in chunks;
recent ones, and sessions of alerts still under investigation, stay."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import asyncpg
import pytest

from monitor import store
from monitor.store.retention import purge

pytestmark = pytest.mark.integration
NOW = datetime(2027, 6, 1, tzinfo=timezone.utc)
DAY = timedelta(days=1)


async def add_session(conn, session_id: str, last_activity: datetime, alert_ids: list[str], items: int = 3) -> None:
    await conn.execute(
        """INSERT INTO flagged_sessions (session_id, account_id, opened_at, last_activity, alert_ids)
           VALUES ($1, 'staff-1', $2, $2, $3)""",
        session_id, last_activity, alert_ids,
    )
    for n in range(items):
        await conn.execute(
            "INSERT INTO session_items (session_id, at, resource) VALUES ($1, $2, $3)",
            session_id, last_activity, f"/pupils/{n}",
        )


async def add_alert(conn, alert_id: str, ts: datetime, status: str, resolved_at: datetime | None = None) -> None:
    await conn.execute(
        """INSERT INTO alerts (alert_id, detector, severity, account_id, ts, detected_at, summary, policy,
                               status, verdict, resolved_at)
           VALUES ($1, 'simultaneous_logins', 'high', 'staff-1', $2, $2, 's', 'p', $3, $4, $5)""",
        alert_id, ts, status, "true_positive" if status == "resolved" else None, resolved_at,
    )
    await conn.execute(
        "INSERT INTO alert_outbox (sink, alert_id, payload, delivered_at) VALUES ('mqtt', $1, '{}', $2)", alert_id, ts
    )


async def test_purges_old_timelines_and_resolved_alerts_in_chunks(postgres_dsn):
    pool = await asyncpg.create_pool(postgres_dsn, min_size=1, max_size=2)
    try:
        await store.migrate(pool)
        old = NOW - 401 * DAY
        async with pool.acquire() as conn:
            await add_alert(conn, "old-resolved", old, "resolved", resolved_at=old)
            await add_alert(conn, "old-open", old, "open")
            await add_alert(conn, "old-silenced", old, "silenced")
            await add_alert(conn, "recently-resolved", old, "resolved", resolved_at=NOW - 10 * DAY)
            for n in range(7):
                await add_session(conn, f"old-{n}", old, ["old-resolved"])
            await add_session(conn, "old-under-investigation", old, ["old-open"])
            await add_session(conn, "recent", NOW - 399 * DAY, ["old-resolved"])
        purged = await purge(pool, keep_for=400 * 86400, chunk=3, now=NOW, pause=0)
        sessions = {r["session_id"] for r in await pool.fetch("SELECT session_id FROM flagged_sessions")}
        alerts = {r["alert_id"] for r in await pool.fetch("SELECT alert_id FROM alerts")}
        items = await pool.fetchval("SELECT count(*) FROM session_items")
        outbox = await pool.fetchval("SELECT count(*) FROM alert_outbox")
    finally:
        await pool.close()
    assert purged["sessions"] == 7 and purged["alerts"] == 2
    assert sessions == {"old-under-investigation", "recent"}
    assert items == 6  # the timelines went with their sessions
    assert alerts == {"old-open", "recently-resolved"}
    assert outbox == 2  # delivery records went with their alerts
