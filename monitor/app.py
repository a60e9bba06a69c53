"""The composition root: settings in, every client, detector and sink built and wired here.

Nothing else in the code base creates a client or reads configuration; parts receive what
they need as arguments.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable

import structlog

from detectors.registry import detector_ids
from monitor.accounts.lifecycle import AccountLifecycle
from monitor.accounts.postgres import PostgresRegistry
from monitor.checkpoints import CheckpointStore
from monitor.config import Settings
from monitor.http import HttpServer, build_app
from monitor.kafka import client_options
from monitor.metrics import Metrics
from monitor.pipeline import Pipeline
from monitor.service import Service
from monitor.shards import build_shard
from monitor.sources.kafka import KafkaEventSource
from sinks.actions import KafkaActions
from sinks.dead_letters import KafkaDeadLetters
from sinks.jsonl import JsonlAlertSink
from sinks.postgres import PostgresSink

log = structlog.get_logger("monitor.app")


async def connect_store(settings: Settings, stop: asyncio.Event):
    """Connect and migrate, retrying with backoff until it works or a stop is requested."""
    from monitor import store

    delay = 0.5
    while True:
        try:
            pool = await store.connect(settings.postgres)
            await store.migrate(pool)
            return pool
        except (OSError, asyncio.TimeoutError, Exception) as error:  # noqa: B014 - asyncpg raises many kinds
            if stop.is_set():
                raise
            log.warning("store not reachable, retrying", error=f"{type(error).__name__}: {error}", retry_in=delay)
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except asyncio.TimeoutError:
                pass
            if stop.is_set():
                raise
            delay = min(delay * 2, 30)


def account_lifecycle(settings: Settings, metrics: Metrics, pool=None) -> AccountLifecycle:
    """Dormancy and account status over the PostgreSQL registry (`run`, `demo`); set `.registry.pool` before start."""
    detectors = settings.detectors
    return AccountLifecycle(
        PostgresRegistry(pool), detectors.dormant_account, detectors.dormant_account_login, metrics=metrics
    )


def build_service(settings: Settings, clock: Callable[[], float] = time.time) -> Service:
    """The live daemon, fully wired but not started. `clock`: the wall clock for quiet shards."""
    from aiokafka import AIOKafkaProducer

    sinks: list = []
    starters: list = []
    closers: list = []
    producer = AIOKafkaProducer(**client_options(settings.kafka), acks="all", enable_idempotence=settings.kafka.idempotent_producer)
    sinks.append(KafkaDeadLetters(producer, settings.source.dead_letter_topic))
    if settings.sinks.actions.enabled:
        sinks.append(KafkaActions(producer, settings.sinks.actions.topic))
    if settings.sinks.jsonl.enabled:
        sinks.append(JsonlAlertSink(settings.sinks.jsonl.path, settings.sinks.jsonl.min_severity))
    postgres_sink = None
    if settings.sinks.postgres.enabled:
        postgres_sink = PostgresSink(pool=None, min_severity=settings.sinks.postgres.min_severity)
        sinks.append(postgres_sink)
    metrics = Metrics(detector_ids(), [sink.name for sink in sinks])
    accounts = account_lifecycle(settings, metrics) if settings.accounts.registry else None
    pipeline = Pipeline(
        # The disabled and revoked accounts as the registry knew them when the partition came.
        lambda partition: build_shard(settings, partition, accounts.restricted if accounts is not None else None),
        sinks,
        metrics,
        accounts=accounts,
    )
    source = KafkaEventSource(settings.kafka, settings.source)
    service = Service(settings, pipeline, source, starters, closers, clock=clock)

    if settings.http.enabled:
        http = HttpServer(build_app(metrics, service.readiness), settings.http.host, settings.http.port)
        starters.append(http.start)
        closers.append(http.close)

    if postgres_sink is not None or accounts is not None:
        pool_holder: dict = {}

        async def start_store() -> None:
            pool = pool_holder["pool"] = await connect_store(settings, service.stop_requested)
            if postgres_sink is not None:
                postgres_sink.pool = pool
            if settings.checkpoint.enabled:
                service.checkpoints = CheckpointStore(pool, settings.source.group_id, settings.source.topic)
            if accounts is not None:
                accounts.registry.pool = pool
                await accounts.start()

        async def close_store() -> None:
            if pool_holder.get("pool") is not None:
                await pool_holder.pop("pool").close()

        starters.append(start_store)
        closers.append(close_store)

    starters.append(producer.start)
    starters.append(pipeline.start_sinks)
    closers.append(pipeline.close_sinks)
    closers.append(producer.stop)
    return service
