"""Live: the daemon's wiring against a real tansu broker and PostgreSQL, its wall clock injected.

The roster is imported with the CLI; the monitor then sees one event, and from there only its
wall clock moves, as on a quiet stream: the warning comes at day 166, nothing more at day
179, the dormancy alert at day 180 (stamped with the exact crossing time), the disable
action on `portal.actions`, the account marked dormant, the gauge at one.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from monitor.service.app import build_service
from monitor.service.config import load_settings

pytestmark = pytest.mark.integration
DAY = 86400.0


class Clock:
    """A wall clock the test moves."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


async def rows(dsn: str, query: str, *args):
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def eventually(dsn: str, query: str, want, timeout: float = 30.0, *args):
    deadline = asyncio.get_running_loop().time() + timeout
    last = None
    while asyncio.get_running_loop().time() < deadline:
        last = await rows(dsn, query, *args)
        if want(last):
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out; last result {last}")


async def test_wall_clock_crossing_on_a_quiet_stream(kafka_broker, postgres_dsn, tmp_path):
    # Day 100 is a minute from now: a roster's statuses hold from the time of its import (now).
    T0 = float(int(time.time()) + 60 - 100 * DAY)  # noqa: N806
    roster = tmp_path / "roster.csv"
    roster.write_text(
        "account_id,portal,role,created_at,last_login_at,status,reason\n"
        f"staff-9001,schools,teacher,{iso(T0)},,active,\n"  # never used: dormant at T0 + 180 days
        f"staff-9003,schools,teacher,{iso(T0)},{iso(T0 + 50 * DAY)},active,\n"  # dormant only at T0 + 230 days
        f"parent-9002,parent,parent,{iso(T0)},,revoked,court ruling\n"
    )
    env = dict(os.environ, PORTAL_MONITOR_POSTGRES__DSN=postgres_dsn)
    imported = subprocess.run(
        [sys.executable, "-m", "monitor", "accounts", "import", str(roster)], env=env, capture_output=True, text=True
    )
    assert imported.returncode == 0, imported.stderr
    assert "3 new accounts" in imported.stdout

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic("portal.events", 2, 1)])
    finally:
        await admin.close()

    settings = load_settings(
        environ={
            "PORTAL_MONITOR_KAFKA__BOOTSTRAP_SERVERS": kafka_broker.bootstrap,
            "PORTAL_MONITOR_KAFKA__IDEMPOTENT_PRODUCER": "false",  # tansu has no InitProducerId
            "PORTAL_MONITOR_SOURCE__SESSION_TIMEOUT": "6s",
            "PORTAL_MONITOR_POSTGRES__DSN": postgres_dsn,
            "PORTAL_MONITOR_HTTP__ENABLED": "false",
            "PORTAL_MONITOR_ENGINE__ALLOWED_LATENESS": "0s",
        }
    )
    clock = Clock(T0 + 100 * DAY)
    service = build_service(settings, clock=clock)
    running = asyncio.create_task(service.run())
    try:
        for _ in range(300):
            if service.readiness()[0] and len(service.shards) == 2:
                break
            await asyncio.sleep(0.1)
        assert service.readiness()[0], service.readiness()
        assert service.delivery.accounts.partitions == 2  # each shard sweeps its own key-hash share

        # The revoked parent (known from the roster only) logs in: critical at once.
        producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
        await producer.start()
        try:
            login = {
                "event_id": "live-1", "type": "login_succeeded", "ts": iso(T0 + 100 * DAY),
                "account_id": "parent-9002", "session_id": "ps1", "ip": "86.150.3.7", "portal": "parent",
            }
            await producer.send_and_wait("portal.events", json.dumps(login).encode(), key=b"parent-9002")
        finally:
            await producer.stop()
        alerts = await eventually(postgres_dsn, "SELECT * FROM alerts", lambda r: len(r) >= 1)
        assert [(a["detector"], a["severity"], a["account_id"]) for a in alerts] == [
            ("revoked_access_use", "critical", "parent-9002")
        ]

        # Day 179: the early warning (due at day 166), not the dormancy alert.
        clock.now = T0 + 179 * DAY
        warned = await eventually(
            postgres_dsn, "SELECT * FROM alerts WHERE detector = 'dormant_account'", lambda r: len(r) >= 1
        )
        await asyncio.sleep(2)  # a few more loop turns on the same clock
        dormancy = await rows(postgres_dsn, "SELECT * FROM alerts WHERE detector = 'dormant_account'")
        assert [(a["account_id"], a["severity"]) for a in dormancy] == [("staff-9001", "low")]
        assert warned[0]["ts"].timestamp() == T0 + 166 * DAY

        # Day 180 and ten minutes: the crossing, at its exact event time.
        clock.now = T0 + 180 * DAY + 600
        dormancy = await eventually(
            postgres_dsn,
            "SELECT * FROM alerts WHERE detector = 'dormant_account' AND severity = 'medium'",
            lambda r: len(r) >= 1,
        )
        assert [a["account_id"] for a in dormancy] == ["staff-9001"]
        assert dormancy[0]["ts"].timestamp() == T0 + 180 * DAY
        evidence = json.loads(dormancy[0]["evidence"])
        assert evidence["action_required"] == "disable_account" and evidence["idle_basis"] == "created"
        account = await eventually(
            postgres_dsn, "SELECT * FROM accounts WHERE account_id = 'staff-9001'", lambda r: r[0]["status"] == "dormant"
        )
        assert account[0]["dormant_alert_id"] == dormancy[0]["alert_id"]
        assert service.shards.metrics.dormant_accounts._value.get() == 1
    finally:
        service.stop_requested.set()
        assert await asyncio.wait_for(running, 30) == 0

    assert [r["account_id"] for r in await rows(postgres_dsn, "SELECT * FROM alerts WHERE severity = 'medium'")] == [
        "staff-9001"
    ]
    actions = AIOKafkaConsumer("portal.actions", bootstrap_servers=kafka_broker.bootstrap, auto_offset_reset="earliest")
    await actions.start()
    try:
        batch = await actions.getmany(timeout_ms=5000)
        records = [r for rs in batch.values() for r in rs]
    finally:
        await actions.stop()
    assert [r.key for r in records] == [b"staff-9001"]
    action = json.loads(records[0].value)
    assert action["schema"] == "portal.action/v1" and action["action"] == "disable_account"
    assert action["alert_id"] == dormancy[0]["alert_id"] and action["account_id"] == "staff-9001"

    # The CLI lists the same action, with the same id.
    listed = subprocess.run(
        [sys.executable, "-m", "monitor", "accounts", "actions"], env=env, capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    assert [json.loads(line)["action_id"] for line in listed.stdout.splitlines()] == [action["action_id"]]
    shown = subprocess.run(
        [sys.executable, "-m", "monitor", "accounts", "show", "staff-9001"], env=env, capture_output=True, text=True
    )
    assert "dormant" in shown.stdout and "dormant_account" in shown.stdout
