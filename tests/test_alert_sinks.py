"""Each external sink against its real server, fed through the PostgreSQL outbox and its relay.

Mosquitto on 127.0.0.1:1883, a tansu broker, a local aiohttp webhook receiver that verifies the
signature, and a Prometheus Alertmanager started here on a free port. No mocks.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from datetime import datetime, timezone

import aiohttp
import aiomqtt
import asyncpg
import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from monitor import store
from monitor.alerting.gate import AlertGate, Silence
from monitor.contract.alerts import new_alert
from monitor.service.config import AlertmanagerSinkSettings, DeliverySettings, MqttSinkSettings, WebhookSinkSettings
from monitor.engine.findings import Findings
from monitor.support.metrics import Metrics
from monitor.delivery.outbox import OutboxRelay
from monitor.support.retry import Backoff
from sinks.alertmanager import AlertmanagerPublisher
from sinks.kafka_alerts import KafkaPublisher
from sinks.mqtt import MqttPublisher
from sinks.postgres import PostgresSink
from sinks.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookPublisher, verify_signature
from tests.support.owned_servers import OwnedAlertmanager
from tests.support.servers import free_port

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc).timestamp()
FAST = DeliverySettings(retry_initial=0.05, retry_max=0.2, poll_interval=0.05)
SECRET = "webhook-test-secret"


def make_alert(trigger: str = "s2", account: str = "staff-0042", severity: str = "high", at: float = T0, ip: str = "86.150.3.7"):
    return new_alert(
        detector="simultaneous_logins", severity=severity, account_id=account, at=at, trigger=trigger,
        session_ids=[trigger, "s1"], summary=f"Account {account} logged in twice at once.",
        evidence={"new_session": {"ip": ip}}, policy="Schools' Portal Site Terms: \"...\"", portal="schools",
    )


def findings(*alerts) -> Findings:
    out = Findings()
    out.alerts.extend(alerts)
    return out


@pytest.fixture
async def pool(postgres_dsn):
    pool = await asyncpg.create_pool(postgres_dsn, min_size=1, max_size=4)
    await store.migrate(pool)
    yield pool
    await pool.close()


async def store_alerts(pool, sinks: list[tuple[str, str]], *alerts, gate: AlertGate | None = None) -> None:
    batch = findings(*alerts)
    if gate is not None:
        batch = gate.apply(batch)
    await PostgresSink(pool, outbox=sinks).write(batch)


async def relay_until_delivered(relay: OutboxRelay, pool, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        await relay.run_once()
        if not await pool.fetchval("SELECT count(*) FROM alert_outbox WHERE sink = $1 AND delivered_at IS NULL", relay.sink):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{relay.sink}: not delivered within {timeout}s")


async def test_mqtt_subscriber_receives_the_alert_at_qos1(pool):
    prefix = f"pm-test-{uuid.uuid4().hex[:8]}/alerts"
    sink = MqttPublisher(MqttSinkSettings(enabled=True, topic_prefix=prefix, client_id=f"pm-{uuid.uuid4().hex[:8]}"))
    alert = make_alert()
    await store_alerts(pool, [("mqtt", "low")], alert)
    metrics = Metrics(["simultaneous_logins"])
    metrics.add_outbox_sinks(["mqtt"])
    relay = OutboxRelay(sink, lambda: pool, metrics, FAST)
    async with aiomqtt.Client("127.0.0.1", 1883, identifier=f"pm-sub-{uuid.uuid4().hex[:8]}") as subscriber:
        await subscriber.subscribe(f"{prefix}/#", qos=1)
        await sink.start()
        try:
            await relay_until_delivered(relay, pool)
        finally:
            await sink.close()
        message = await asyncio.wait_for(anext(aiter(subscriber.messages)), 10)
    assert str(message.topic) == f"{prefix}/high/simultaneous_logins"
    assert message.qos == 1
    body = json.loads(message.payload)
    assert body["alert_id"] == alert.alert_id and body["account_id"] == "staff-0042"
    assert metrics.sink_deliveries.labels("mqtt", "delivered")._value.get() == 1


async def test_kafka_consumer_reads_portal_alerts_keyed_by_account(pool, kafka_broker):
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    alert = make_alert()
    await store_alerts(pool, [("kafka", "low")], alert)
    relay = OutboxRelay(KafkaPublisher(producer, "portal.alerts"), lambda: pool, Metrics([]), FAST)
    try:
        await relay_until_delivered(relay, pool)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer("portal.alerts", bootstrap_servers=kafka_broker.bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=10_000)
        records = [r for rs in batch.values() for r in rs]
    finally:
        await consumer.stop()
    assert len(records) == 1
    assert records[0].key == b"staff-0042"
    assert json.loads(records[0].value)["alert_id"] == alert.alert_id
    assert dict(records[0].headers)["alert_id"] == alert.alert_id.encode()


class WebhookReceiver:
    """A local HTTP receiver that verifies each request's signature, as a portal team's would."""

    def __init__(self, secret: str, fail_first: int = 0) -> None:
        self.secret = secret.encode()
        self.fail_first = fail_first
        self.received: list[dict] = []
        self.rejected = 0
        self.port = free_port()
        self._runner = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not verify_signature(
            self.secret, request.headers.get(TIMESTAMP_HEADER, ""), body, request.headers.get(SIGNATURE_HEADER, "")
        ):
            self.rejected += 1
            return web.Response(status=401)
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.Response(status=503)
        self.received.append(json.loads(body))
        return web.Response(status=204)

    async def __aenter__(self) -> "WebhookReceiver":
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


async def test_webhook_is_signed_and_retried_until_accepted(pool):
    alert = make_alert()
    await store_alerts(pool, [("webhook", "low")], alert)
    metrics = Metrics([])
    metrics.add_outbox_sinks(["webhook"])
    async with WebhookReceiver(SECRET, fail_first=2) as receiver:
        sink = WebhookPublisher(WebhookSinkSettings(enabled=True, url=receiver.url, secret=SECRET))
        relay = OutboxRelay(sink, lambda: pool, metrics, FAST)
        await sink.start()
        try:
            await relay_until_delivered(relay, pool)
        finally:
            await sink.close()
    assert [a["alert_id"] for a in receiver.received] == [alert.alert_id]
    assert receiver.rejected == 0
    row = await pool.fetchrow("SELECT attempts, last_error, delivered_at FROM alert_outbox")
    assert row["attempts"] == 3 and row["last_error"] is None and row["delivered_at"] is not None
    assert metrics.sink_deliveries.labels("webhook", "failed")._value.get() == 2
    assert metrics.sink_deliveries.labels("webhook", "retried")._value.get() == 2


async def test_webhook_signed_with_another_secret_is_refused_by_the_receiver(pool):
    await store_alerts(pool, [("webhook", "low")], make_alert())
    async with WebhookReceiver(SECRET) as receiver:
        sink = WebhookPublisher(WebhookSinkSettings(enabled=True, url=receiver.url, secret="not-the-secret"))
        relay = OutboxRelay(sink, lambda: pool, Metrics([]), FAST)
        await sink.start()
        try:
            await relay.run_once()
        finally:
            await sink.close()
    assert receiver.rejected == 1 and not receiver.received
    row = await pool.fetchrow("SELECT delivered_at, last_error FROM alert_outbox")
    assert row["delivered_at"] is None and "401" in row["last_error"]


def test_signature_covers_the_timestamp_and_expires():
    body = b'{"alert_id": "x"}'
    from sinks.webhook import sign

    signature = sign(b"k", "1000", body)
    assert verify_signature(b"k", "1000", body, signature, now=1000)
    assert not verify_signature(b"k", "1001", body, signature, now=1001)  # replayed with a new timestamp
    assert not verify_signature(b"k", "1000", body, signature, now=1000 + 301)  # too old
    assert not verify_signature(b"k", "1000", body + b" ", signature, now=1000)  # body changed


@pytest.mark.skipif(
    not (shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")),
    reason="Alertmanager not installed (scripts/services installs the Debian package prometheus-alertmanager)",
)
async def test_alertmanager_shows_the_alert_in_its_api(pool):
    manager = OwnedAlertmanager().start()
    try:
        alert = make_alert()
        await store_alerts(pool, [("alertmanager", "low")], alert)
        sink = AlertmanagerPublisher(AlertmanagerSinkSettings(enabled=True, url=manager.url, generator_url="https://monitor.example/api/v1"))
        relay = OutboxRelay(sink, lambda: pool, Metrics([]), FAST)
        await sink.start()
        try:
            await relay_until_delivered(relay, pool)
        finally:
            await sink.close()
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{manager.url}/api/v2/alerts") as response:
                shown = await response.json()
    finally:
        manager.stop()
    assert len(shown) == 1
    labels, annotations = shown[0]["labels"], shown[0]["annotations"]
    assert labels["alertname"] == "SimultaneousLogins"
    assert labels["detector"] == "simultaneous_logins" and labels["severity"] == "high" and labels["portal"] == "schools"
    assert "account_id" not in labels and annotations["account_id"] == "staff-0042"
    assert annotations["summary"] == alert.summary
    assert shown[0]["status"]["state"] == "active"
    assert shown[0]["generatorURL"].endswith(f"/alerts/{alert.alert_id}")


async def test_one_sink_down_does_not_hold_back_another(pool):
    prefix = f"pm-test-{uuid.uuid4().hex[:8]}/alerts"
    alert = make_alert()
    await store_alerts(pool, [("mqtt", "low"), ("webhook", "low")], alert)
    metrics = Metrics([])
    metrics.add_outbox_sinks(["mqtt", "webhook"])
    down = WebhookPublisher(WebhookSinkSettings(enabled=True, url=f"http://127.0.0.1:{free_port()}/hook", secret=SECRET, timeout=2))
    up = MqttPublisher(MqttSinkSettings(enabled=True, topic_prefix=prefix, client_id=f"pm-{uuid.uuid4().hex[:8]}"))
    relays = [OutboxRelay(down, lambda: pool, metrics, FAST), OutboxRelay(up, lambda: pool, metrics, FAST)]
    for relay in relays:
        await relay.start()
    try:
        deadline = asyncio.get_running_loop().time() + 15
        while asyncio.get_running_loop().time() < deadline:
            rows = {r["sink"]: r for r in await pool.fetch("SELECT sink, delivered_at, attempts, last_error FROM alert_outbox")}
            if rows["mqtt"]["delivered_at"] and rows["webhook"]["attempts"] >= 2:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.2)  # one gauge refresh
    finally:
        for relay in relays:
            await relay.close()
    assert rows["mqtt"]["delivered_at"] is not None
    assert rows["webhook"]["delivered_at"] is None and rows["webhook"]["attempts"] >= 2
    assert "ClientConnectorError" in rows["webhook"]["last_error"]
    assert metrics.sink_queue_depth.labels("webhook")._value.get() == 1
    assert metrics.sink_queue_depth.labels("mqtt")._value.get() == 0
    assert metrics.sink_oldest_undelivered.labels("webhook")._value.get() > 0


async def test_outbox_rows_follow_min_severity_and_redelivery_adds_none(pool):
    high, low = make_alert("s2"), make_alert("s3", account="staff-7", severity="low")
    sinks = [("mqtt", "high"), ("webhook", "low")]
    await store_alerts(pool, sinks, high, low)
    await store_alerts(pool, sinks, high, low)  # the same batch again after a crash before commit
    rows = await pool.fetch("SELECT sink, alert_id FROM alert_outbox ORDER BY sink, alert_id")
    assert sorted((r["sink"], r["alert_id"]) for r in rows) == sorted(
        [("mqtt", high.alert_id), ("webhook", high.alert_id), ("webhook", low.alert_id)]
    )
    assert await pool.fetchval("SELECT count(*) FROM alerts") == 2


async def test_repeats_and_silences_are_stored_not_published(pool):
    gate = AlertGate(cooldown=900, silences=[Silence(account_id="staff-9", expires=T0 + 3600, silence_id=None)])
    first, repeat, later_repeat = make_alert("s2"), make_alert("s3", at=T0 + 60), make_alert("s4", at=T0 + 120)
    silenced = make_alert("s5", account="staff-9")
    await store_alerts(pool, [("mqtt", "low")], first, repeat, silenced, gate=gate)
    await store_alerts(pool, [("mqtt", "low")], repeat, later_repeat, gate=gate)  # `repeat` redelivered
    alerts = {r["alert_id"]: r for r in await pool.fetch("SELECT alert_id, status, repeat_count, last_seen FROM alerts")}
    assert set(alerts) == {first.alert_id, silenced.alert_id}
    assert alerts[first.alert_id]["repeat_count"] == 3
    assert alerts[first.alert_id]["last_seen"] == later_repeat.ts
    assert alerts[silenced.alert_id]["status"] == "silenced"
    assert [r["alert_id"] for r in await pool.fetch("SELECT alert_id FROM alert_outbox")] == [first.alert_id]


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    assert Backoff(1, 300, jitter=True).after(1, rand=lambda: 1.0) == 1
    assert Backoff(1, 300, jitter=True).after(4, rand=lambda: 1.0) == 8
    assert Backoff(1, 300, jitter=True).after(4, rand=lambda: 0.0) == 4
    assert Backoff(1, 300, jitter=True).after(50, rand=lambda: 1.0) == 300


async def test_replay_without_postgres_publishes_directly_and_groups_as_live(tmp_path):
    """`replay --sinks`: no outbox without PostgreSQL; the sink is written to through the Sink
    protocol, after the same cool-down grouping the daemon applies."""
    import os
    import subprocess
    import sys

    prefix = f"pm-test-{uuid.uuid4().hex[:8]}/alerts"
    events = tmp_path / "events.jsonl"
    lines = [
        {"event_id": f"e{n}", "type": "login_succeeded", "ts": f"2026-03-02T08:0{n}:00Z", "account_id": "staff-1",
         "session_id": f"s{n}", "ip": f"86.150.{n}.7"}
        for n in range(4)
    ]
    events.write_text("".join(json.dumps(line) + "\n" for line in lines))
    env = dict(os.environ, PORTAL_MONITOR_SINKS__MQTT__ENABLED="true", PORTAL_MONITOR_SINKS__MQTT__TOPIC_PREFIX=prefix,
               PORTAL_MONITOR_SINKS__MQTT__CLIENT_ID=f"pm-{uuid.uuid4().hex[:8]}")
    async with aiomqtt.Client("127.0.0.1", 1883, identifier=f"pm-sub-{uuid.uuid4().hex[:8]}") as subscriber:
        await subscriber.subscribe(f"{prefix}/#", qos=1)
        replay = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "monitor", "replay", str(events), "--sinks", "--summary", "json",
            "--dead-letters", str(tmp_path / "dead.jsonl"), env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(replay.communicate(), 60)
        assert replay.returncode == 0, err.decode()[-2000:]
        written = [json.loads(line) for line in out.decode().splitlines()]
        received = []
        while len(received) < len(written):
            message = await asyncio.wait_for(anext(aiter(subscriber.messages)), 10)
            received.append((str(message.topic), json.loads(message.payload)["alert_id"]))
        with pytest.raises(asyncio.TimeoutError):  # and nothing more: no duplicate
            await asyncio.wait_for(anext(aiter(subscriber.messages)), 1.0)
    summary = json.loads(err.decode().strip().splitlines()[-1])
    # s1 (high: 2 networks) published, s2 (critical: 3 networks) an escalation, s3 grouped into s2
    assert [a["severity"] for a in written] == ["high", "critical"]
    assert summary["suppressed"] == {"grouped": 1}
    assert sorted(received) == sorted((f"{prefix}/{a['severity']}/simultaneous_logins", a["alert_id"]) for a in written)
