"""MQTT sink: each alert on `{topic_prefix}/{severity}/{detector}` at QoS 1.

`publish` returns once the broker acknowledged (PUBACK): aiomqtt's `publish` at QoS 1 waits
for it. One connection, opened on first use and re-opened after an error. TLS and
username/password from settings (the password from env or `password_file`).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING
import socket
import ssl


from sinks.outbound import OutboundAlert, without_pupils
from monitor.contract.settings import Section
from monitor.contract.durations import Seconds
from monitor.contract.alerts import Severity


if TYPE_CHECKING:
    import aiomqtt


class MqttPublisher:
    name = "mqtt"
    concurrency = 10  # QoS 1 publishes awaiting PUBACK at once (paho's in-flight window is 20)

    def __init__(self, settings: MqttSinkSettings) -> None:
        self.settings = settings
        self.min_severity = settings.min_severity
        self.timeout = float(settings.timeout)
        self._client: aiomqtt.Client | None = None
        self._lock = asyncio.Lock()

    def topic(self, alert: OutboundAlert) -> str:
        return f"{self.settings.topic_prefix}/{alert.severity}/{alert.detector}"

    async def start(self) -> None:
        pass  # connect on first publish: a broker that is down must not stop the monitor starting

    async def publish(self, alert: OutboundAlert) -> None:
        import aiomqtt  # here, not at import: settings and the CLI need not load the MQTT client

        client = await self._connected()
        try:
            body = alert.body if self.settings.include_pupils else without_pupils(alert).body
            await client.publish(self.topic(alert), body, qos=1, timeout=self.settings.timeout)
        except (aiomqtt.MqttError, asyncio.TimeoutError):
            await self._drop(client)
            raise

    async def _connected(self) -> aiomqtt.Client:
        import aiomqtt

        async with self._lock:
            if self._client is None:
                s = self.settings
                client = aiomqtt.Client(
                    s.host,
                    s.port,
                    username=s.username or None,
                    password=s.password or None,
                    identifier=s.client_id,
                    keepalive=s.keepalive,
                    timeout=s.timeout,
                    tls_context=self._tls_context(),
                    # an alert is one small packet: send it now, not after Nagle's delay
                    socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
                )
                await client.__aenter__()
                self._client = client
            return self._client

    def _tls_context(self) -> ssl.SSLContext | None:
        s = self.settings
        if not s.tls:
            return None
        context = ssl.create_default_context(cafile=s.ca_file or None)
        if s.cert_file:
            context.load_cert_chain(s.cert_file, s.key_file or None)
        context.check_hostname = s.tls_check_hostname
        return context

    async def _drop(self, client: aiomqtt.Client) -> None:
        async with self._lock:
            if self._client is client:
                self._client = None
        try:
            await client.__aexit__(None, None, None)
        except Exception:
            pass  # the connection is already gone

    async def close(self) -> None:
        if self._client is not None:
            await self._drop(self._client)


class MqttSinkSettings(Section):
    """Alerts to an MQTT broker on `{topic_prefix}/{severity}/{detector}`, QoS 1 (delivered once PUBACK'd)."""

    enabled: bool = False
    min_severity: Severity = "low"
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "portal-monitor"
    topic_prefix: str = "portal-monitor/alerts"
    include_pupils: bool = False
    """Send pupil ids (`evidence.pupil_records`) too; by default the alert carries counts only."""
    username: str = ""
    password: str = ""
    password_file: str = ""
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    tls_check_hostname: bool = True
    keepalive: int = 60
    timeout: Seconds = Seconds(10)
