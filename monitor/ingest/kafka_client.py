"""Kafka client options shared by the consumer, the dead-letter producer and the Kafka sinks."""

from __future__ import annotations

from typing import Any, Literal

from monitor.contract.durations import Seconds
from monitor.contract.settings import Section



def client_options(settings: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client: servers, TLS and SASL, from settings."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": settings.client_id,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        context = create_ssl_context(
            cafile=settings.ssl_cafile or None,
            certfile=settings.ssl_certfile or None,
            keyfile=settings.ssl_keyfile or None,
        )
        context.check_hostname = settings.ssl_check_hostname
        options["ssl_context"] = context
    if settings.security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = settings.sasl_password
    return options


class KafkaSettings(Section):
    """Connection to the Kafka cluster, shared by the event source and the Kafka sinks."""

    bootstrap_servers: str = "localhost:9092"
    client_id: str = "portal-monitor"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    sasl_username: str = ""
    sasl_password: str = ""
    sasl_password_file: str = ""
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    ssl_check_hostname: bool = True
    idempotent_producer: bool = True
    """Idempotent producers for dead letters and alerts; turn off for brokers without InitProducerId (tansu)."""


class SourceSettings(Section):
    """Where events are read from in `run`: the Kafka topic and consumer group."""

    topic: str = "portal.events"
    group_id: str = "portal-monitor"
    dead_letter_topic: str = "portal.events.dlq"
    batch_max_records: int = 5000
    poll_timeout: Seconds = Seconds(0.2)
    fetch_max_wait: Seconds = Seconds(0.1)
    """Longest the broker may hold a fetch waiting for new records (Kafka's fetch.max.wait.ms).
    Some brokers (tansu) answer only when it runs out, so it bounds event-to-alert latency."""
    session_timeout: Seconds = Seconds(10)
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
