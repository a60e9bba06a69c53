"""Pupil ids stay inside: the store keeps them, external sinks get counts unless they ask.

Real PostgreSQL (the store and its outbox) and real Mosquitto; no mocks.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import aiomqtt
import pytest

from monitor.contract.alerts import new_alert
from monitor.service.config import MqttSinkSettings
from monitor.support.metrics import Metrics
from monitor.delivery.outbox import OutboxRelay
from sinks.mqtt import MqttPublisher
from sinks.outbound import outbound, without_pupils
from tests.test_alert_sinks import FAST, T0, pool, relay_until_delivered, store_alerts  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration


def pupil_alert(trigger: str = "s9"):
    return new_alert(
        detector="bulk_record_access", severity="high", account_id="staff-0920", at=T0, trigger=trigger,
        session_ids=[trigger], summary="Account staff-0920 (teacher) took copies of about 250 distinct pupils' records.",
        evidence={"distinct_pupils": 250, "exact": False, "pupil_records": {"pupils": ["7001", "7002"], "pupils_listed": 2}},
        policy="Schools' Portal Site Terms", portal="schools",
    )


def test_without_pupils_drops_the_pupil_evidence_and_keeps_the_counts() -> None:
    alert = outbound(pupil_alert())
    assert b"7001" in alert.body
    bare = without_pupils(alert)
    body = json.loads(bare.body)
    assert "pupil_records" not in body["evidence"] and body["evidence"]["distinct_pupils"] == 250
    assert b"7001" not in bare.body
    assert (bare.alert_id, bare.summary) == (alert.alert_id, alert.summary)
    other = outbound(new_alert(detector="simultaneous_logins", severity="high", account_id="a", at=T0, trigger="t",
                               session_ids=[], summary="s", evidence={"ip": "1.2.3.4"}, policy="p"))
    assert without_pupils(other) is other  # untouched, byte for byte


@pytest.mark.parametrize("include_pupils", [False, True])
async def test_mqtt_receives_counts_not_pupil_ids_unless_asked(pool, include_pupils: bool) -> None:
    prefix = f"pm-test-{uuid.uuid4().hex[:8]}/alerts"
    sink = MqttPublisher(MqttSinkSettings(enabled=True, topic_prefix=prefix, client_id=f"pm-{uuid.uuid4().hex[:8]}",
                                          include_pupils=include_pupils))
    alert = pupil_alert(trigger=f"s-{uuid.uuid4().hex[:8]}")
    await store_alerts(pool, [("mqtt", "low")], alert)
    stored = await pool.fetchval("SELECT evidence::text FROM alerts WHERE alert_id = $1", alert.alert_id)
    assert "7001" in stored  # the store keeps the pupils for the API and the console
    metrics = Metrics(["bulk_record_access"])
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
    body = json.loads(message.payload)
    assert body["alert_id"] == alert.alert_id and body["evidence"]["distinct_pupils"] == 250
    assert ("pupil_records" in body["evidence"]) is include_pupils
    assert (b"7001" in message.payload) is include_pupils
