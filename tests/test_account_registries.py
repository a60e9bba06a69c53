"""The two account registries answer alike, and the PostgreSQL one is idempotent (real PostgreSQL).

Every detector case is replayed once more over the PostgreSQL registry: the SQL merge rules
mirror the Python ones, so the alerts and the registry's final state must be the same.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import asyncpg
import pytest

from detectors.registry import detector_ids
from monitor import store
from monitor.accounts.memory import MemoryRegistry
from monitor.accounts.postgres import PostgresRegistry
from monitor.accounts.registry import import_roster_file
from monitor.service.config import PostgresSettings, load_settings
from monitor.support.metrics import Metrics
from monitor.service.offline import build_offline_pipeline, start_offline
from sinks.postgres import PostgresSink
from tests.test_detector_cases import FOLDERS, Collect, replay_case

pytestmark = pytest.mark.integration


async def connect(dsn: str) -> asyncpg.Pool:
    pool = await store.connect(PostgresSettings(dsn=dsn, pool_min=1, pool_max=2))
    await store.migrate(pool)
    return pool


def state(accounts) -> list[tuple]:
    """Registry rows as comparable tuples (times to the microsecond, as PostgreSQL keeps them)."""
    def t(x):
        return None if x is None else round(x, 6)

    return sorted(
        (a.account_id, a.key_hash, a.portal, a.role, t(a.created_at), t(a.first_seen_at), t(a.last_login_at),
         t(a.last_activity_at), t(a.reactivated_at), a.status, a.status_reason, t(a.status_at), t(a.warned_for),
         a.dormant_alert_id)
        for a in accounts
    )


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
async def test_cases_alike_over_postgres(folder: Path, postgres_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(folder)  # relative paths in a case's settings are files of the case
    expected = json.loads((folder / "expected.json").read_text())
    memory = MemoryRegistry()
    in_memory = await replay_case(folder, registry=memory)
    pool = await connect(postgres_dsn)
    try:
        postgres = PostgresRegistry(pool)
        over_postgres = await replay_case(folder, registry=postgres)
        rows = await postgres.list(None, None, 10_000)
    finally:
        await pool.close()
    assert [a.alert_id for a in over_postgres.alerts] == [a.alert_id for a in in_memory.alerts]
    assert [(a.detector, a.account_id, a.severity) for a in over_postgres.alerts] == [
        (e["detector"], e["account_id"], e["severity"]) for e in expected
    ]
    assert state(rows) == state(memory.accounts.values())


ROSTER = textwrap.dedent(
    """\
    Account_ID,portal,role,created_at,last_login_at,status,reason
    staff-1,schools,teacher,2025-01-06T08:00:00Z,2025-03-01T09:30:00+01:00,active,
    staff-2,schools,head,2025-01-06,,dormant,
    parent-1,parent,parent,2024-09-01,,revoked,court ruling
    ,schools,teacher,2025-01-06,,active,
    staff-3,school,teacher,2025-01-06,,active,
    staff-4,schools,teacher,2025-01-06 08:00,,active,
    staff-5,schools,teacher,yesterday,,active,
    staff-6,schools,teacher,2025-01-06,,asleep,
    staff-7,schools,teacher,2025-01-06
    staff-1,schools,deputy,2025-01-06T08:00:00Z,2025-02-01T09:30:00Z,active,
    staff-8,,,,,,
    """
)


@pytest.mark.parametrize("kind", ["memory", "postgres"])
async def test_roster_import_reports_rejections_and_is_idempotent(kind, tmp_path, postgres_server) -> None:
    path = tmp_path / "roster.csv"
    path.write_text(ROSTER)
    name = await postgres_server.create_database() if kind == "postgres" else None
    pool = await connect(postgres_server.dsn_for(name)) if name else None
    try:
        registry = PostgresRegistry(pool) if pool else MemoryRegistry()
        first = await import_roster_file(registry, str(path), now=1_750_000_000.0)
        second = await import_roster_file(registry, str(path), now=1_760_000_000.0)
        accounts = await registry.list(None, None, 100) if pool else list(registry.accounts.values())
    finally:
        if pool:
            await pool.close()
            await postgres_server.drop_database(name)
    assert first.rows_read == 11
    assert (first.new, first.updated, first.unchanged) == (4, 0, 0)
    assert (second.new, second.updated, second.unchanged) == (0, 0, 4)
    assert first.rejected_by_reason == {
        "missing_account_id": 1,
        "bad_portal": 1,
        "timestamp_without_offset": 1,
        "bad_timestamp": 1,
        "bad_status": 1,
        "wrong_field_count": 1,
        "duplicate": 1,
    }
    lines = {row.line: row.reason for row in first.rejected_rows}
    assert lines == {
        2: "duplicate", 5: "missing_account_id", 6: "bad_portal", 7: "timestamp_without_offset",
        8: "bad_timestamp", 9: "bad_status", 10: "wrong_field_count",
    }
    report = first.render()
    assert "line 7: timestamp_without_offset: created_at: '2025-01-06 08:00' has no UTC offset" in report
    assert "line 2: duplicate: account_id 'staff-1' again on line 11, which is used" in report
    by_id = {a.account_id: a for a in accounts}
    assert set(by_id) == {"staff-1", "staff-2", "parent-1", "staff-8"}
    assert by_id["staff-1"].role == "deputy"  # the later row wins
    assert by_id["staff-1"].last_login_at == 1738402200.0  # 2025-02-01T09:30Z
    assert by_id["staff-2"].status == "dormant" and by_id["staff-2"].created_at == 1736121600.0
    assert by_id["parent-1"].status == "revoked" and by_id["parent-1"].status_reason == "court ruling"
    assert by_id["staff-8"].first_seen_at == 1_750_000_000.0  # no dates: the clock starts at the first import
    assert by_id["staff-8"].status == "active" and by_id["staff-8"].portal is None


async def test_replaying_the_same_file_twice_gives_no_second_alert(postgres_dsn: str) -> None:
    """Live store, same events twice (a redelivery, or an operator replaying a day): no new alert."""
    folder = Path(__file__).parent / "detector_cases" / "dormant_login_after_181_days"
    pool = await connect(postgres_dsn)
    try:
        runs = []
        for _ in range(2):
            sink = PostgresSink(pool)
            collect = Collect()
            settings = load_settings(environ={})
            pipeline = build_offline_pipeline(
                settings, [sink, collect], Metrics(detector_ids(), ["postgres", "collect"]), PostgresRegistry(pool)
            )
            await start_offline(pipeline)
            lines = (folder / "events.jsonl").read_bytes().splitlines()
            await pipeline.run_file([list(enumerate(lines))])
            runs.append(collect.alerts)
        stored = await pool.fetch("SELECT detector, severity FROM alerts ORDER BY ts")
    finally:
        await pool.close()
    assert [a.detector for a in runs[0]] == ["dormant_account", "dormant_account", "dormant_account_login"]
    assert runs[1] == []  # the registry already holds the login that ended the spell
    assert [(r["detector"], r["severity"]) for r in stored] == [
        ("dormant_account", "low"), ("dormant_account", "medium"), ("dormant_account_login", "high"),
    ]


async def test_account_lookups_are_planned_for_the_ids_asked_not_once_for_all(postgres_dsn: str) -> None:
    """A statement first run while the registry was empty must not keep a generic plan: the one
    PostgreSQL settles on compares every row with every id of `account_id = ANY($1)`, 100 ms a
    batch at 20,000 accounts and growing with the table. Planned for the actual ids it is a
    hashed filter or, once the table is large, index lookups (`plan_cache_mode` in
    monitor.store.connect)."""
    from monitor.contract.accounts import AccountActivity
    from monitor.accounts.postgres import FETCH

    pool = await connect(postgres_dsn)
    try:
        await pool.execute("TRUNCATE accounts")
        registry = PostgresRegistry(pool)
        async with pool.acquire() as conn:
            await conn.execute(f"PREPARE fetch_accounts(text[]) AS {FETCH}")
            ids = [f"acct-{i}" for i in range(20_000)]
            wanted = "{" + ",".join(ids[:500]) + "}"  # a batch's worth, as the lifecycle asks
            for _ in range(8):  # long past the five runs after which a generic plan may stick
                await conn.fetch(f"EXECUTE fetch_accounts('{wanted}')")
            await registry.record(
                {a: AccountActivity(partition=0, first_at=1.7e9, known=True, last_login_at=1.7e9) for a in ids}, [], []
            )
            plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE fetch_accounts('{wanted}')")
            await conn.execute("DEALLOCATE fetch_accounts")
    finally:
        await pool.close()
    conditions = []

    def walk(node: dict) -> None:
        if node.get("Relation Name") == "accounts":
            conditions.extend(str(node.get(key, "")) for key in ("Filter", "Index Cond", "Recheck Cond"))
        for child in node.get("Plans", []):
            walk(child)

    walk(json.loads(plan)[0]["Plan"])
    assert conditions and not any("$1" in c for c in conditions), conditions
