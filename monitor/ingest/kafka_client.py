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
        "request_timeout_ms": int(settings.request_timeout * 1000),
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
    request_timeout: Seconds = Seconds(40)
    """How long a broker may take to answer a request, connecting included (aiokafka's
    request_timeout_ms); a broker that accepts and never answers is reported after this long."""


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


# -- reaching the brokers: one way to say why not --------------------------------------------------

import asyncio  # noqa: E402
import logging  # noqa: E402
import socket  # noqa: E402

import structlog  # noqa: E402

_log = structlog.get_logger("monitor.kafka")


class KafkaUnreachable(ConnectionError):
    """No broker could be reached; the message names the servers, the timeout and the cause."""


def bootstrap_endpoints(servers: str) -> list[tuple[str, int]]:
    """(host, port) of each `host:port` in bootstrap_servers; ValueError naming a bad one."""
    endpoints = []
    for item in servers.split(","):
        item = item.strip()
        host, sep, port_text = item.rpartition(":")
        if not item or not sep or not host or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"not host:port (port 1-65535): {item!r}")
        endpoints.append((host.strip("[]"), int(port_text)))
    return endpoints


async def probe(host: str, port: int, timeout: float) -> str | None:
    """None if a TCP connection to host:port opens within `timeout`, else why not, in words."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (TimeoutError, asyncio.TimeoutError):
        return f"{host}:{port}: no answer within {timeout:g} s"
    except ConnectionRefusedError:
        return f"{host}:{port}: connection refused (nothing listening there)"
    except socket.gaierror as error:
        return f"{host}:{port}: cannot resolve {host!r} ({error.strerror})"
    except OSError as error:
        return f"{host}:{port}: {error.strerror or type(error).__name__}"
    writer.close()
    return None


async def explain_unreachable(settings: KafkaSettings, timeout: float = 5.0) -> str:
    """Why the brokers could not be used: each endpoint's TCP answer, probed now."""
    try:
        endpoints = bootstrap_endpoints(settings.bootstrap_servers)
    except ValueError as error:
        return f"kafka.bootstrap_servers: {error}"
    reasons = []
    for host, port in endpoints:
        problem = await probe(host, port, timeout)
        reasons.append(problem or f"{host}:{port}: accepts connections but gave no Kafka answer within "
                                  f"{float(settings.request_timeout):g} s (kafka.request_timeout; is it a Kafka "
                                  "listener, are TLS and SASL right?)")
    return "; ".join(reasons)


async def start_client(client: Any, settings: KafkaSettings, role: str) -> None:
    """`client.start()` for an aiokafka consumer or producer, logging while it waits and raising
    `KafkaUnreachable` with servers, timeout and cause when no broker answers."""
    from aiokafka.errors import KafkaConnectionError, KafkaError

    timeout = float(settings.request_timeout)
    _log.info(f"connecting to Kafka ({role})", servers=settings.bootstrap_servers, timeout_s=timeout)
    try:
        await client.start()
    except (KafkaConnectionError, OSError, asyncio.TimeoutError) as error:
        why = await explain_unreachable(settings)
        raise KafkaUnreachable(
            f"Kafka at {settings.bootstrap_servers} not reachable for the {role} "
            f"(request_timeout {timeout:g} s): {why}"
        ) from error
    except KafkaError as error:
        raise KafkaUnreachable(
            f"Kafka at {settings.bootstrap_servers} refused the {role}: {type(error).__name__}: {error}"
        ) from error


class _NameEmptyReasons(logging.Filter):
    """aiokafka logs `Unable connect to "host:port": ` with an empty reason when a connect
    times out; say what happened instead of nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if str(record.msg).startswith("Unable") and isinstance(args, tuple) and args and not str(args[-1]).strip():
            record.args = args[:-1] + ("no answer within kafka.request_timeout",)
        return True


logging.getLogger("aiokafka").addFilter(_NameEmptyReasons())  # aiokafka.client logs as "aiokafka"
