"""Alerts on their way to an external sink (MQTT, Kafka, webhook, Alertmanager).

A *publisher* sends one alert and returns only once the far side acknowledged it (or raises).
Live, publishers are driven by their outbox relay (`monitor.delivery.outbox`); without PostgreSQL (a
replay), `DirectAlertSink` puts one behind the ordinary `Sink` protocol.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

import msgspec

from monitor.contract.alerts import Alert
from monitor.engine.findings import Findings
from sinks.base import at_least


class OutboundAlert(msgspec.Struct, kw_only=True):
    """The fields a publisher routes by, plus the exact `portal.alert/v1` JSON it sends."""

    alert_id: str
    detector: str
    severity: str
    account_id: str
    ts: str
    summary: str
    policy: str = ""
    portal: str | None = None
    source: str | None = None  # an alert about a source (password_spray): its network or address
    body: bytes = b""


_fields = msgspec.json.Decoder(OutboundAlert)
_encode = msgspec.json.Encoder().encode


def outbound_from_json(body: bytes) -> OutboundAlert:
    """Decode the routing fields of a stored alert; `body` stays byte for byte as stored."""
    alert = _fields.decode(body)
    alert.body = body
    return alert


def outbound(alert: Alert) -> OutboundAlert:
    return outbound_from_json(_encode(alert))


PUPIL_EVIDENCE = "pupil_records"
"""The evidence key under which detectors put everything that names a pupil (ids, resources)."""
_MARK = f'"{PUPIL_EVIDENCE}"'.encode()


def without_pupils(alert: OutboundAlert) -> OutboundAlert:
    """The alert as it may leave for an external sink: no pupil ids, counts only.

    Pupil-record detectors keep pupil ids and resources under `evidence.pupil_records`; the
    store, the API and the console keep them, but MQTT, Kafka and webhook receivers get the
    alert without that key unless their sink's `include_pupils` is set. Summaries never name
    pupils. Other alerts pass unchanged, byte for byte.
    """
    if _MARK not in alert.body:
        return alert
    document = msgspec.json.decode(alert.body)
    evidence = document.get("evidence")
    if not isinstance(evidence, dict) or PUPIL_EVIDENCE not in evidence:
        return alert
    del evidence[PUPIL_EVIDENCE]
    return msgspec.structs.replace(alert, body=_encode(document))


class Publisher(Protocol):
    name: str
    min_severity: str

    async def start(self) -> None: ...

    async def publish(self, alert: OutboundAlert) -> None: ...

    async def close(self) -> None: ...


class DirectAlertSink:
    """A publisher as a pipeline sink: each alert at or above its severity, straight away.

    For runs without the outbox (no PostgreSQL). A batch retried by the pipeline skips the
    alerts already acknowledged in an earlier try, so a retry does not publish them twice.
    """

    def __init__(self, publisher: Publisher, remember: int = 10_000) -> None:
        self.publisher = publisher
        self.name = publisher.name
        self._sent: set[str] = set()
        self._order: deque[str] = deque()
        self._remember = remember

    async def start(self) -> None:
        await self.publisher.start()

    async def write(self, findings: Findings) -> None:
        for alert in at_least(findings.alerts, self.publisher.min_severity):
            if alert.alert_id in self._sent:
                continue
            await self.publisher.publish(outbound(alert))
            self._sent.add(alert.alert_id)
            self._order.append(alert.alert_id)
            if len(self._order) > self._remember:
                self._sent.discard(self._order.popleft())

    async def close(self) -> None:
        await self.publisher.close()
