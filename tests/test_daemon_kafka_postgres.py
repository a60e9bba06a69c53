"""End to end: `portal-monitor run` as a subprocess against a real tansu broker and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.support.servers import free_port

pytestmark = pytest.mark.integration
TOPIC = "portal.events"


def event(n: int, minute: int, kind: str, session: str | None, ip: str | None, **extra) -> dict:
    record = {
        "event_id": f"evt-{n}",
        "type": kind,
        "ts": f"2026-03-02T08:{minute:02d}:00Z",
        "account_id": "staff-0042",
        "portal": "schools",
    }
    if session:
        record["session_id"] = session
    if ip:
        record["ip"] = ip
    record.update(extra)
    return record


SHARED_LOGIN = [
    event(1, 0, "login_succeeded", "s1", "81.2.69.10", user_agent="Firefox"),
    event(2, 1, "page_view", "s1", "81.2.69.10", resource="/pupils/4711/attendance"),
    event(3, 5, "login_succeeded", "s2", "86.150.3.7", user_agent="Chrome"),
    event(4, 6, "page_view", "s2", "86.150.3.7", resource="/pupils/4711/reports", action="download"),
    event(5, 7, "page_view", "s1", "81.2.69.10", resource="/pupils/4712/behaviour"),
]


async def produce(bootstrap: str, records: list[bytes], partitions: int = 2) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(TOPIC, partitions, 1)])
    except Exception:
        pass  # already there
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for raw in records:
            await producer.send_and_wait(TOPIC, raw, key=b"staff-0042")
    finally:
        await producer.stop()


def start_daemon(bootstrap: str, dsn: str, port: int, group: str = "pm-test") -> subprocess.Popen:
    env = dict(os.environ)
    env.update(
        PORTAL_MONITOR_KAFKA__BOOTSTRAP_SERVERS=bootstrap,
        PORTAL_MONITOR_SOURCE__GROUP_ID=group,
        PORTAL_MONITOR_SOURCE__SESSION_TIMEOUT="6s",
        PORTAL_MONITOR_POSTGRES__DSN=dsn,
        PORTAL_MONITOR_HTTP__PORT=str(port),
        PORTAL_MONITOR_ENGINE__ALLOWED_LATENESS="0s",
        PORTAL_MONITOR_LOGGING__FORMAT="json",
        PORTAL_MONITOR_KAFKA__IDEMPOTENT_PRODUCER="false",  # tansu has no InitProducerId
        # The events are dated; live, the wall clock would carry the account past 180 days idle.
        PORTAL_MONITOR_DETECTORS__DORMANT_ACCOUNT__ENABLED="false",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "monitor", "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


async def wait_for(query, dsn: str, want, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            conn = await asyncpg.connect(dsn)
            try:
                last = await conn.fetch(query)
            finally:
                await conn.close()
            if want(last):
                return last
        except asyncpg.UndefinedTableError:
            pass
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out waiting; last result {last}")


def metric(port: int, name: str, labels: str = "") -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    total = 0.0
    for line in body.splitlines():
        if line.startswith(name) and (not labels or labels in line):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def committed_offsets(bootstrap: str, group: str, partitions: int) -> tuple[dict, dict]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(TOPIC, p) for p in range(partitions)]
        committed = {tp.partition: (await consumer.committed(tp)) or 0 for tp in tps}  # empty: none
        ends = {tp.partition: offset for tp, offset in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()
    return committed, ends


def stop(process: subprocess.Popen) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        raise AssertionError("daemon did not stop within 30 s of SIGTERM:\n" + output.decode()[-3000:])
    return process.returncode, output.decode()


async def test_shared_login_alerted_stored_and_committed(kafka_broker, postgres_dsn):
    records = [json.dumps(e).encode() for e in SHARED_LOGIN] + [b"{not json"]
    await produce(kafka_broker.bootstrap, records)
    port = free_port()
    daemon = start_daemon(kafka_broker.bootstrap, postgres_dsn, port)
    try:
        alerts = await wait_for("SELECT * FROM alerts", postgres_dsn, lambda rows: len(rows) >= 1)
        items = await wait_for(
            "SELECT * FROM session_items ORDER BY at", postgres_dsn, lambda rows: len(rows) >= 3
        )
        assert metric(port, "portal_monitor_invalid_events_total", 'reason="not_json"') == 1
        ready = urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert ready.status == 200
    finally:
        code, output = stop(daemon)
    assert code == 0, output[-3000:]

    assert len(alerts) == 1
    alert = alerts[0]
    assert alert["detector"] == "simultaneous_logins"
    assert alert["account_id"] == "staff-0042"
    assert sorted(alert["session_ids"]) == ["s1", "s2"]
    evidence = json.loads(alert["evidence"])
    assert evidence["new_session"]["ip"] == "86.150.3.7"
    assert evidence["live_sessions"][0]["ip"] == "81.2.69.10"
    assert "simultaneous logins" in alert["policy"]

    conn = await asyncpg.connect(postgres_dsn)
    try:
        sessions = {r["session_id"]: r for r in await conn.fetch("SELECT * FROM flagged_sessions")}
    finally:
        await conn.close()
    assert set(sessions) == {"s1", "s2"}
    assert sessions["s1"]["ip"] == "81.2.69.10" and sessions["s2"]["user_agent"] == "Chrome"
    viewed = [(r["session_id"], r["resource"], r["action"]) for r in items]
    assert ("s1", "/pupils/4711/attendance", "view") in viewed  # before the flag
    assert ("s2", "/pupils/4711/reports", "download") in viewed
    assert ("s1", "/pupils/4712/behaviour", "view") in viewed  # after the flag

    committed, ends = await committed_offsets(kafka_broker.bootstrap, "pm-test", 2)
    assert committed == ends, (committed, ends)

    # A restart re-reads nothing and adds no alert.
    daemon = start_daemon(kafka_broker.bootstrap, postgres_dsn, port)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2).status == 200:
                    break
            except OSError:
                pass
            await asyncio.sleep(0.3)
        await asyncio.sleep(2)
        assert metric(port, "portal_monitor_events_total") == 0
    finally:
        code, output = stop(daemon)
    assert code == 0, output[-3000:]
    conn = await asyncpg.connect(postgres_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM alerts") == 1
    finally:
        await conn.close()

    dead = AIOKafkaConsumer(
        "portal.events.dlq", bootstrap_servers=kafka_broker.bootstrap, auto_offset_reset="earliest"
    )
    await dead.start()
    try:
        batch = await dead.getmany(timeout_ms=5000)
        letters = [json.loads(r.value) for rs in batch.values() for r in rs]
    finally:
        await dead.stop()
    assert [letter["reason"] for letter in letters] == ["not_json"]
    assert letters[0]["raw"] == "{not json"
