"""Webhook sink: each alert as a JSON POST, signed so the receiver can verify it.

Headers:
- `X-Portal-Monitor-Timestamp`: Unix seconds when the request was signed;
- `X-Portal-Monitor-Signature`: `sha256=` + hex HMAC-SHA256 with the shared secret of
  `"{timestamp}.{body}"`; the timestamp is inside the MAC, so a captured request cannot be
  replayed later with a fresh timestamp;
- `X-Portal-Monitor-Alert-Id`: the alert's id, to recognise a redelivery.

Any answer other than 2xx is a failure: the relay retries with backoff. A receiver verifies
with `verify_signature` (or the same three lines in its own language).
"""

from __future__ import annotations

import hashlib
import hmac
import time

from sinks.http_client import DeliveryRefused, client_session
from sinks.outbound import OutboundAlert, without_pupils
from monitor.contract.settings import Section
from monitor.contract.durations import Seconds
from monitor.contract.alerts import Severity

SIGNATURE_HEADER = "X-Portal-Monitor-Signature"
TIMESTAMP_HEADER = "X-Portal-Monitor-Timestamp"
ALERT_ID_HEADER = "X-Portal-Monitor-Alert-Id"


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify_signature(
    secret: bytes, timestamp: str, body: bytes, signature: str, now: float | None = None, tolerance: float = 300
) -> bool:
    """True if `signature` is ours for this body and timestamp, and the timestamp is recent."""
    try:
        age = abs((time.time() if now is None else now) - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance and hmac.compare_digest(sign(secret, timestamp, body), signature)


class WebhookPublisher:
    name = "webhook"

    def __init__(self, settings: WebhookSinkSettings) -> None:
        self.settings = settings
        self.min_severity = settings.min_severity
        self.timeout = float(settings.timeout)
        self._secret = settings.secret.encode()
        self._session = None

    async def start(self) -> None:
        s = self.settings
        self._session = client_session(s.timeout, s.ca_file, s.tls_verify)

    async def publish(self, alert: OutboundAlert) -> None:
        if not self.settings.include_pupils:
            alert = without_pupils(alert)
        if self._session is None:
            await self.start()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self._secret, timestamp, alert.body),
            ALERT_ID_HEADER: alert.alert_id,
        }
        async with self._session.post(self.settings.url, data=alert.body, headers=headers) as response:
            if not 200 <= response.status < 300:
                raise DeliveryRefused(f"webhook answered HTTP {response.status}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class WebhookSinkSettings(Section):
    """Alerts as a signed JSON POST: `X-Portal-Monitor-Signature: sha256=HMAC(secret, "{timestamp}.{body}")`."""

    enabled: bool = False
    min_severity: Severity = "low"
    url: str = ""
    include_pupils: bool = False
    """Send pupil ids (`evidence.pupil_records`) too; by default the alert carries counts only."""
    secret: str = ""
    secret_file: str = ""
    ca_file: str = ""
    tls_verify: bool = True
    timeout: Seconds = Seconds(10)
