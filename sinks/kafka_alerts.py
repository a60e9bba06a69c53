"""Kafka sink: alerts to the topic `portal.alerts` (key account_id, or the source of an alert about
a source), waiting for the broker's ack.

It uses the monitor's producer (acks=all, idempotent unless `kafka.idempotent_producer` is
off), so connection, TLS and SASL come from [kafka]. The header `alert_id` lets a consumer
recognise a redelivered alert.
"""

from __future__ import annotations

import asyncio

from sinks.outbound import OutboundAlert, without_pupils
from monitor.contract.settings import Section
from monitor.contract.durations import Seconds
from monitor.contract.alerts import Severity


class KafkaPublisher:
    name = "kafka"

    def __init__(
        self, producer, topic: str = "portal.alerts", min_severity: str = "low", timeout: float = 30.0,
        owns_producer: bool = False,
        include_pupils: bool = False,
    ) -> None:
        self.include_pupils = include_pupils
        self.producer = producer
        self.topic = topic
        self.min_severity = min_severity
        self.timeout = timeout
        self.owns_producer = owns_producer

    async def start(self) -> None:
        if self.owns_producer:  # otherwise the composition root starts the shared producer
            await self.producer.start()

    async def publish(self, alert: OutboundAlert) -> None:
        if not self.include_pupils:
            alert = without_pupils(alert)
        delivery = await self.producer.send(
            self.topic,
            alert.body,
            key=(alert.account_id or alert.source or "").encode(),  # a source alert has no account
            headers=[("alert_id", alert.alert_id.encode()), ("content-type", b"application/json")],
        )
        await asyncio.wait_for(delivery, self.timeout)

    async def close(self) -> None:
        if self.owns_producer:
            await self.producer.stop()


class KafkaAlertSinkSettings(Section):
    """Alerts to a Kafka topic, key = account_id; connection, TLS and SASL from [kafka]."""

    enabled: bool = False
    min_severity: Severity = "low"
    topic: str = "portal.alerts"
    timeout: Seconds = Seconds(30)
    include_pupils: bool = False
    """Send pupil ids (`evidence.pupil_records`) too; by default the alert carries counts only."""
