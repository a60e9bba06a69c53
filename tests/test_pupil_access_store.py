"""Who viewed a pupil: the access log written by the PostgreSQL sink, its queries and its retention.

Real PostgreSQL; events run through a real shard, written by the real sink.
"""

from __future__ import annotations

import asyncio
import json
from datetime import date, datetime, timedelta, timezone

import asyncpg
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from monitor import store
from monitor.commands.cli import main
from monitor.response import api
from monitor.response import queries as responder
from monitor.service.config import load_settings
from monitor.service.shards import build_shard
from monitor.store.retention import purge_pupil_access
from sinks.postgres import PostgresSink

pytestmark = pytest.mark.integration
TOKEN = "pupil-access-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def view(n: int, account: str, ts: str, pupil: str | None, resource: str, ip: str, action: str = "view", portal: str = "schools") -> bytes:
    event = {"event_id": f"v{n}", "type": "page_view", "ts": ts, "account_id": account, "session_id": f"s-{account}",
             "resource": resource, "ip": ip, "action": action, "portal": portal}
    if pupil is not None:
        event["pupil_id"] = pupil
    return json.dumps(event).encode()


# Two days of access to pupil 4711 by a teacher (5 addresses: 4 kept) and a parent; other pupils too.
BATCH_1 = [
    view(1, "staff-0042", "2026-03-02T09:00:00Z", "4711", "/pupils/4711/attendance", "81.2.69.10"),
    view(2, "staff-0042", "2026-03-02T09:05:00Z", "4711", "/pupils/4711/reports", "81.2.69.11", "download"),
    view(3, "staff-0042", "2026-03-02T09:06:00Z", None, "/pupils/4711/reports", "81.2.69.12", "print"),  # pupil from the path
    view(4, "staff-0042", "2026-03-02T09:07:00Z", "5000", "/pupils/5000", "81.2.69.10"),
    view(5, "parent-0101", "2026-03-02T19:00:00Z", "4711", "/pupils/4711", "86.150.3.7", portal="parent"),
    view(6, "staff-0042", "2026-03-02T10:00:00Z", None, "/news", "81.2.69.10"),  # not a pupil's record
]
BATCH_2 = [
    view(7, "staff-0042", "2026-03-02T15:00:00Z", "4711", "/pupils/4711/behaviour", "81.2.69.13"),
    view(8, "staff-0042", "2026-03-02T15:01:00Z", "4711", "/pupils/4711/behaviour", "81.2.69.14", "export"),
    view(9, "staff-0042", "2026-03-03T08:00:00Z", "4711", "/pupils/4711", "81.2.69.10"),
]


async def write(dsn: str, *batches: list[bytes], access_log: bool = True) -> None:
    env = {"PORTAL_MONITOR_ENGINE__ALLOWED_LATENESS": "0s", "PORTAL_MONITOR_PUPILS__ACCESS_LOG": str(access_log).lower()}
    shard = build_shard(load_settings(environ=env), 0)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        await store.migrate(pool)
        sink = PostgresSink(pool)
        offset = 0
        for batch in batches:
            findings = shard.process([(offset + n, record) for n, record in enumerate(batch)])
            offset += len(batch)
            await sink.write(findings)
        await sink.write(shard.drain())
    finally:
        await pool.close()


async def test_access_is_one_row_per_pupil_day_account_and_answers_who_viewed(postgres_dsn) -> None:
    await write(postgres_dsn, BATCH_1, BATCH_2)
    pool = await asyncpg.create_pool(postgres_dsn, min_size=1, max_size=2)
    try:
        rows = await pool.fetch("SELECT pupil_id, day, account_id, views, downloads, prints, exports, cardinality(addresses) AS n "
                                "FROM pupil_access ORDER BY pupil_id, day, account_id")
        assert [tuple(r) for r in rows] == [
            ("4711", date(2026, 3, 2), "parent-0101", 1, 0, 0, 0, 1),
            ("4711", date(2026, 3, 2), "staff-0042", 2, 1, 1, 1, 4),  # 5 addresses seen, 4 kept
            ("4711", date(2026, 3, 3), "staff-0042", 1, 0, 0, 0, 1),
            ("5000", date(2026, 3, 2), "staff-0042", 1, 0, 0, 0, 1),
        ]
        since = datetime(2026, 3, 1, tzinfo=timezone.utc)
        found = await responder.pupil_access(pool, "4711", since=since)
        accounts = {a["account_id"]: a for a in found["accounts"]}
        assert list(accounts) == ["staff-0042", "parent-0101"]  # most recent first
        staff = accounts["staff-0042"]
        assert (staff["views"], staff["downloads"], staff["prints"], staff["exports"], staff["days"]) == (3, 1, 1, 1, 2)
        assert staff["first_at"] == datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
        assert staff["last_at"] == datetime(2026, 3, 3, 8, 0, tzinfo=timezone.utc)
        assert staff["addresses"] == ["81.2.69.10", "81.2.69.11", "81.2.69.12", "81.2.69.13"]
        only_day_two = await responder.pupil_access(pool, "4711", since=datetime(2026, 3, 3, tzinfo=timezone.utc))
        assert [(a["account_id"], a["views"]) for a in only_day_two["accounts"]] == [("staff-0042", 1)]
        assert (await responder.pupil_access(pool, "9999"))["accounts"] == []
    finally:
        await pool.close()


async def test_switched_off_nothing_is_kept(postgres_dsn) -> None:
    await write(postgres_dsn, BATCH_1, access_log=False)
    pool = await asyncpg.create_pool(postgres_dsn, min_size=1, max_size=1)
    try:
        await store.migrate(pool)
        assert await pool.fetchval("SELECT count(*) FROM pupil_access") == 0
    finally:
        await pool.close()


async def test_retention_purges_days_older_than_its_own_period(postgres_dsn) -> None:
    pool = await asyncpg.create_pool(postgres_dsn, min_size=1, max_size=2)
    try:
        await store.migrate(pool)
        now = datetime(2027, 6, 1, 12, 0, tzinfo=timezone.utc)
        days = [now.date() - timedelta(days=n) for n in (0, 399, 400, 401, 800)]
        for n, day in enumerate(days):
            at = datetime.combine(day, datetime.min.time(), timezone.utc)
            await pool.execute("INSERT INTO pupil_access (pupil_id, day, account_id, views, first_at, last_at) "
                               "VALUES ($1, $2, 'staff-0042', 1, $3, $3)", f"p{n}", day, at)
        purged = await purge_pupil_access(pool, 400 * 86400, chunk=1, now=now, pause=0)
        assert purged == 2
        kept = [r["day"] for r in await pool.fetch("SELECT day FROM pupil_access ORDER BY day DESC")]
        assert kept == days[:3]
    finally:
        await pool.close()


def test_cli_pupils_access(postgres_dsn, monkeypatch, capsys) -> None:
    asyncio.run(write(postgres_dsn, BATCH_1))
    monkeypatch.setenv("PORTAL_MONITOR_POSTGRES__DSN", postgres_dsn)
    capsys.readouterr()  # the shard's start-up log
    try:
        code = main(["pupils", "access", "4711", "--since", "2026-03-01", "--format", "json"])
    finally:
        structlog.reset_defaults()
    out = capsys.readouterr().out
    assert code == 0, out
    found = json.loads(out)
    assert [(a["account_id"], a["views"], a["downloads"]) for a in found["accounts"]] == [("parent-0101", 1, 0), ("staff-0042", 1, 1)]


async def test_api_pupil_access_behind_the_token(postgres_dsn) -> None:
    await write(postgres_dsn, BATCH_1)
    pool = await asyncpg.create_pool(postgres_dsn, min_size=1, max_size=2)
    app = web.Application()
    assert api.mount(app, TOKEN, lambda: pool)
    try:
        async with TestClient(TestServer(app)) as http:
            response = await http.get("/api/v1/pupils/4711/access?since=2026-03-01")
            assert response.status == 401
            response = await http.get("/api/v1/pupils/4711/access?since=2026-03-01", headers=AUTH)
            assert response.status == 200
            body = await response.json()
            assert body["pupil_id"] == "4711" and {a["account_id"] for a in body["accounts"]} == {"staff-0042", "parent-0101"}
            response = await http.get("/api/v1/pupils/4711/access?since=soon", headers=AUTH)
            assert response.status == 400
            response = await http.get("/api/v1/openapi.json")
            assert "/pupils/{pupil_id}/access" in (await response.json())["paths"]
    finally:
        await pool.close()
