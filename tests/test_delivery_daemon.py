"""End to end: `portal-monitor run` delivering to MQTT, Kafka and a webhook through the outbox,
while its PostgreSQL (a test-owned instance, never the shared one) is stopped and restarted.

Every alert reaches every sink exactly once, offsets are not committed past alerts that were
not yet durable, and the responder API of the running daemon answers with its token only.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import aiomqtt
import asyncpg
import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from sinks.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from tests.support.owned_servers import OwnedPostgres
from tests.support.servers import free_port

pytestmark = pytest.mark.integration
TOPIC = "portal.events"
SECRET = "e2e-webhook-secret"
TOKEN = "e2e-api-token"
PARTITIONS = 2


def shared_login(account: int) -> list[bytes]:
    """Two live sessions of one account from two networks: one simultaneous_logins alert."""
    base = {"account_id": f"staff-{account:04d}", "portal": "schools"}
    events = [
        {**base, "event_id": f"a{account}-1", "type": "login_succeeded", "ts": "2026-03-02T08:00:00Z",
         "session_id": f"a{account}-s1", "ip": "81.2.69.10"},
        {**base, "event_id": f"a{account}-2", "type": "login_succeeded", "ts": "2026-03-02T08:05:00Z",
         "session_id": f"a{account}-s2", "ip": "86.150.3.7"},
    ]
    return [json.dumps(e).encode() for e in events]


async def produce(bootstrap: str, accounts: range) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for account in accounts:
            for raw in shared_login(account):
                await producer.send_and_wait(TOPIC, raw, key=f"staff-{account:04d}".encode())
    finally:
        await producer.stop()


async def create_topic(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])
    finally:
        await admin.close()


async def offsets(bootstrap: str) -> tuple[dict, dict]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id="pm-e2e", enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
        committed = {tp.partition: (await consumer.committed(tp)) or 0 for tp in tps}
        ends = {tp.partition: o for tp, o in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()
    return committed, ends


class Receivers:
    """What arrived at each sink, by alert id (a list, so duplicates show)."""

    def __init__(self) -> None:
        self.mqtt: list[str] = []
        self.webhook: list[str] = []
        self.webhook_bad_signatures = 0


async def webhook_server(receivers: Receivers, port: int, delay: float) -> web.AppRunner:
    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        if not verify_signature(SECRET.encode(), request.headers[TIMESTAMP_HEADER], body, request.headers[SIGNATURE_HEADER]):
            receivers.webhook_bad_signatures += 1
            return web.Response(status=401)
        await asyncio.sleep(delay)  # a slow receiver: deliveries are in flight when PostgreSQL stops
        receivers.webhook.append(json.loads(body)["alert_id"])
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def api_get(port: int, path: str, token: str | None) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def test_every_alert_delivered_once_across_a_postgres_restart(kafka_broker):
    pg = OwnedPostgres().start()
    receivers = Receivers()
    prefix = f"pm-e2e-{uuid.uuid4().hex[:8]}/alerts"
    hook_port, http_port = free_port(), free_port()
    runner = await webhook_server(receivers, hook_port, delay=1.5)
    daemon = None
    try:
        admin = await asyncpg.connect(pg.dsn())
        await admin.execute("CREATE DATABASE pm")
        await admin.close()
        dsn = pg.dsn("pm")
        await create_topic(kafka_broker.bootstrap)

        async with aiomqtt.Client("127.0.0.1", 1883, identifier=f"pm-sub-{uuid.uuid4().hex[:8]}") as subscriber:
            await subscriber.subscribe(f"{prefix}/#", qos=1)

            async def collect() -> None:
                async for message in subscriber.messages:
                    receivers.mqtt.append(json.loads(message.payload)["alert_id"])

            collector = asyncio.create_task(collect())
            env = dict(os.environ)
            env.update(
                PORTAL_MONITOR_KAFKA__BOOTSTRAP_SERVERS=kafka_broker.bootstrap,
                PORTAL_MONITOR_KAFKA__IDEMPOTENT_PRODUCER="false",  # tansu has no InitProducerId
                PORTAL_MONITOR_SOURCE__GROUP_ID="pm-e2e",
                PORTAL_MONITOR_SOURCE__SESSION_TIMEOUT="6s",
                PORTAL_MONITOR_POSTGRES__DSN=dsn,
                PORTAL_MONITOR_POSTGRES__CONNECT_TIMEOUT="3s",
                PORTAL_MONITOR_HTTP__PORT=str(http_port),
                PORTAL_MONITOR_ENGINE__ALLOWED_LATENESS="0s",
                PORTAL_MONITOR_LOGGING__FORMAT="json",
                PORTAL_MONITOR_SINKS__MQTT__ENABLED="true",
                PORTAL_MONITOR_SINKS__MQTT__TOPIC_PREFIX=prefix,
                PORTAL_MONITOR_SINKS__MQTT__CLIENT_ID=f"pm-e2e-{uuid.uuid4().hex[:8]}",
                PORTAL_MONITOR_SINKS__KAFKA__ENABLED="true",
                PORTAL_MONITOR_SINKS__WEBHOOK__ENABLED="true",
                PORTAL_MONITOR_SINKS__WEBHOOK__URL=f"http://127.0.0.1:{hook_port}/hook",
                PORTAL_MONITOR_SINKS__WEBHOOK__SECRET=SECRET,
                PORTAL_MONITOR_DELIVERY__RETRY_INITIAL="200ms",
                PORTAL_MONITOR_DELIVERY__RETRY_MAX="1s",
                PORTAL_MONITOR_DELIVERY__POLL_INTERVAL="200ms",
                PORTAL_MONITOR_API__TOKEN=TOKEN,
                # The events are dated; live, the wall clock would carry the accounts past 180 days idle.
                PORTAL_MONITOR_DETECTORS__DORMANT_ACCOUNT__ENABLED="false",
            )
            daemon = subprocess.Popen(
                [sys.executable, "-m", "monitor", "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )

            async def stored() -> int:
                conn = await asyncpg.connect(dsn)
                try:
                    return await conn.fetchval("SELECT count(*) FROM alerts")
                except asyncpg.UndefinedTableError:
                    return 0
                finally:
                    await conn.close()

            # 1. five alerts, delivered everywhere
            await produce(kafka_broker.bootstrap, range(0, 5))
            await until(lambda: _ready(lambda: len(set(receivers.webhook)) >= 5), 60, "the first five alerts")

            # 2. five more; PostgreSQL stops while the slow webhook still has them in flight
            await produce(kafka_broker.bootstrap, range(5, 10))
            await until(lambda: _stored_at_least(stored, 10), 30, "ten alerts stored")
            await asyncio.sleep(0.3)
            pg.stop()
            durable_until, _ = await offsets(kafka_broker.bootstrap)

            # 3. five more while the store is down: not durable, so not committed
            await produce(kafka_broker.bootstrap, range(10, 15))
            await asyncio.sleep(4)
            committed, ends = await offsets(kafka_broker.bootstrap)
            assert sum(ends.values()) == 30
            assert sum(committed.values()) <= 20, (committed, ends)

            pg.start()
            want = 15
            await until(lambda: _ready(lambda: len(set(receivers.mqtt)) >= want and len(set(receivers.webhook)) >= want), 90,
                        "all fifteen alerts at MQTT and the webhook")
            await asyncio.sleep(3)  # room for any duplicate to show up

            status, body = api_get(http_port, "/api/v1/alerts?limit=100", TOKEN)
            assert status == 200 and len(body["alerts"]) == want
            assert api_get(http_port, "/api/v1/alerts", None)[0] == 401
            assert api_get(http_port, "/api/v1/alerts", "wrong")[0] == 401
            await asyncio.sleep(1.2)  # one refresh of the queue gauges
            scrape = urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5).read().decode()
            for sink in ("mqtt", "kafka", "webhook"):
                assert f'portal_monitor_sink_queue_depth{{sink="{sink}"}} 0.0' in scrape
                assert f'portal_monitor_sink_deliveries_total{{outcome="delivered",sink="{sink}"}} 15.0' in scrape
            assert 'portal_monitor_alert_verdicts_total{detector="simultaneous_logins",verdict="false_positive"} 0.0' in scrape
            collector.cancel()
    finally:
        if daemon is not None:
            daemon.send_signal(signal.SIGTERM)
            try:
                output = daemon.communicate(timeout=30)[0].decode()
            except subprocess.TimeoutExpired:
                daemon.kill()
                output = daemon.communicate()[0].decode()
        await runner.cleanup()

    try:
        assert daemon.returncode == 0, output[-3000:]
        conn = await asyncpg.connect(dsn)
        try:
            alert_ids = {r["alert_id"] for r in await conn.fetch("SELECT alert_id FROM alerts")}
            undelivered = await conn.fetchval("SELECT count(*) FROM alert_outbox WHERE delivered_at IS NULL")
            outbox = await conn.fetchval("SELECT count(*) FROM alert_outbox")
        finally:
            await conn.close()
    finally:
        pg.destroy()

    assert len(alert_ids) == 15
    assert outbox == 45 and undelivered == 0
    assert sorted(receivers.mqtt) == sorted(alert_ids), "MQTT: each alert exactly once"
    assert sorted(receivers.webhook) == sorted(alert_ids), "webhook: each alert exactly once"
    assert receivers.webhook_bad_signatures == 0

    consumer = AIOKafkaConsumer("portal.alerts", bootstrap_servers=kafka_broker.bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        records = []
        deadline = time.monotonic() + 10
        while len(records) < 15 and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=1000)
            records += [r for rs in batch.values() for r in rs]
    finally:
        await consumer.stop()
    assert sorted(json.loads(r.value)["alert_id"] for r in records) == sorted(alert_ids), "Kafka: each alert exactly once"
    assert all(r.key == json.loads(r.value)["account_id"].encode() for r in records)

    committed, ends = await offsets(kafka_broker.bootstrap)
    assert committed == ends
    assert "outbox failed, retrying" in output or "sink write failed" in output  # the outage was seen


async def _ready(check) -> bool:
    return check()


async def _stored_at_least(stored, n: int) -> bool:
    return await stored() >= n
