"""Prometheus Alertmanager sink: `POST {url}/api/v2/alerts`, one alert per request.

Labels stay bounded so Alertmanager's routes can group on them: `alertname` (the detector in
CamelCase), `detector`, `severity`, `portal`, plus the opaque `alert_id` that keeps two
accounts' alerts distinct (Alertmanager identifies an alert by its label set; route
`group_by` should name the bounded labels). The account id, the summary and the policy go in
annotations, never labels. `startsAt` is the event time; `endsAt` is delivery time plus
`resolve_after`, since nothing re-sends a one-off alert to keep it firing.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

import msgspec

from sinks.http_client import DeliveryRefused, client_session
from sinks.outbound import OutboundAlert
from monitor.contract.settings import Section
from monitor.contract.durations import Seconds
from monitor.contract.alerts import Severity


def alertname(detector: str) -> str:
    return "".join(part.capitalize() for part in detector.split("_"))


class AlertmanagerPublisher:
    name = "alertmanager"

    def __init__(self, settings: AlertmanagerSinkSettings) -> None:
        self.settings = settings
        self.min_severity = settings.min_severity
        self.timeout = float(settings.timeout)
        self.url = settings.url.rstrip("/") + "/api/v2/alerts"
        self._session = None
        self._encode = msgspec.json.Encoder().encode

    def payload(self, alert: OutboundAlert, now: float | None = None) -> list[dict]:
        s = self.settings
        ends = datetime.fromtimestamp((time.time() if now is None else now) + s.resolve_after, timezone.utc)
        body = {
            "labels": {
                "alertname": alertname(alert.detector),
                "detector": alert.detector,
                "severity": alert.severity,
                "portal": alert.portal or "unknown",
                "alert_id": alert.alert_id,
            },
            "annotations": {
                "summary": alert.summary,
                "account_id": alert.account_id,
                "policy": alert.policy,
            },
            "startsAt": alert.ts,
            "endsAt": ends.isoformat().replace("+00:00", "Z"),
        }
        if alert.source:  # an alert about a source (password_spray): where the attempts came from
            body["annotations"]["source"] = alert.source
        if s.generator_url:
            body["generatorURL"] = f"{s.generator_url.rstrip('/')}/alerts/{alert.alert_id}"
        return [body]

    async def start(self) -> None:
        s = self.settings
        self._session = client_session(s.timeout, s.ca_file, s.tls_verify)

    async def publish(self, alert: OutboundAlert) -> None:
        if self._session is None:
            await self.start()
        s = self.settings
        headers = {"Content-Type": "application/json"}
        auth = None
        if s.bearer_token:
            headers["Authorization"] = f"Bearer {s.bearer_token}"
        elif s.username:
            from aiohttp import BasicAuth

            auth = BasicAuth(s.username, s.password)
        async with self._session.post(self.url, data=self._encode(self.payload(alert)), headers=headers, auth=auth) as response:
            if not 200 <= response.status < 300:
                detail = (await response.text())[:200]
                raise DeliveryRefused(f"alertmanager answered HTTP {response.status}: {detail}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class AlertmanagerSinkSettings(Section):
    """Alerts to Prometheus Alertmanager's API v2 (`POST {url}/api/v2/alerts`)."""

    enabled: bool = False
    min_severity: Severity = "low"
    url: str = "http://127.0.0.1:9093"
    generator_url: str = ""
    """Base URL of the responder API or UI; `{generator_url}/alerts/{alert_id}` goes into generatorURL."""
    resolve_after: Seconds = Seconds(3600)
    """Alertmanager keeps the alert firing this long after delivery (endsAt), then resolves it."""
    bearer_token: str = ""
    bearer_token_file: str = ""
    username: str = ""
    password: str = ""
    password_file: str = ""
    ca_file: str = ""
    tls_verify: bool = True
    timeout: Seconds = Seconds(10)
