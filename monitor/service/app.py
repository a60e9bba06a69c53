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
from monitor.response import api
from monitor.accounts.lifecycle import AccountLifecycle
from monitor.accounts.postgres import PostgresRegistry
from monitor.alerting.gate import build_gate
from monitor.service.checkpoints import CheckpointStore
from monitor.service.config import ConfigError, Settings
from monitor.service.http import HttpServer, build_app
from monitor.ingest.kafka_client import client_options
from monitor.support.metrics import Metrics
from monitor.delivery.outbox import OutboxRelay
from monitor.delivery.delivery import Delivery
from monitor.support.retry import Backoff, retrying
from monitor.engine.shards import Shards
from monitor.service.lifecycle import Service
from monitor.places import shared_networks
from monitor.places.geo import GeoServices
from monitor.service.housekeeping import Periodic
from monitor.service.shards import build_shard
from monitor.ingest.sources.kafka import KafkaEventSource
from sinks.actions import KafkaActions
from sinks.dead_letters import KafkaDeadLetters
from sinks.jsonl import JsonlAlertSink
from sinks.outbound import DirectAlertSink
from sinks.postgres import PostgresSink

log = structlog.get_logger("monitor.service.app")


async def connect_store(settings: Settings, stop: asyncio.Event):
    """Connect and migrate, retrying with backoff until it works or a stop is requested."""
    from monitor import store

    async def connect():
        pool = await store.connect(settings.postgres)
        await store.migrate(pool)
        return pool

    async def wait(delay: float) -> None:
        try:
            await asyncio.wait_for(stop.wait(), timeout=delay)
        except asyncio.TimeoutError:
            pass

    return await retrying(connect, what="connecting to the store", backoff=Backoff(0.5, 30.0), log=log,
                          give_up=stop.is_set, wait=wait)


def account_lifecycle(settings: Settings, metrics: Metrics, pool=None) -> AccountLifecycle:
    """Dormancy and account status over the PostgreSQL registry (`run`, `demo`); set `.registry.pool` before start."""
    detectors = settings.detectors
    return AccountLifecycle(
        PostgresRegistry(pool), detectors.dormant_account, detectors.dormant_account_login, metrics=metrics,
        write_every=settings.accounts.write_every, write_limit=settings.accounts.write_limit,
    )


def build_service(settings: Settings, clock: Callable[[], float] = time.time) -> Service:
    """The live daemon, fully wired but not started. `clock`: the wall clock for quiet shards."""
    from aiokafka import AIOKafkaProducer

    check_sinks(settings)
    sinks: list = []
    starters: list = []
    closers: list = []
    producer = AIOKafkaProducer(**client_options(settings.kafka), acks="all", enable_idempotence=settings.kafka.idempotent_producer)
    sinks.append(KafkaDeadLetters(producer, settings.source.dead_letter_topic))
    if settings.sinks.actions.enabled:
        sinks.append(KafkaActions(producer, settings.sinks.actions.topic))
    if settings.sinks.jsonl.enabled:
        sinks.append(JsonlAlertSink(settings.sinks.jsonl.path, settings.sinks.jsonl.min_severity))
    publishers = build_publishers(settings, producer)
    relays: list[OutboxRelay] = []
    postgres_sink = None
    if settings.sinks.postgres.enabled:
        postgres_sink = PostgresSink(
            pool=None,
            min_severity=settings.sinks.postgres.min_severity,
            outbox=[(p.name, p.min_severity) for p in publishers],
            on_outbox=lambda: [relay.wake.set() for relay in relays],
        )
        sinks.append(postgres_sink)
    else:
        sinks.extend(DirectAlertSink(p) for p in publishers)  # no outbox without PostgreSQL
    metrics = Metrics(detector_ids(), [sink.name for sink in sinks])
    gate = build_gate(settings)
    geo = GeoServices.from_settings(settings)  # one per process: GeoIP readers, lists, shared networks
    accounts = account_lifecycle(settings, metrics) if settings.accounts.registry else None
    shards = Shards(
        # The disabled and revoked accounts as the registry knew them when the partition came.
        lambda partition: build_shard(
            settings, partition, geo=geo, restricted=accounts.restricted if accounts is not None else None
        ),
        metrics,
    )
    delivery = Delivery(sinks, metrics, gate=gate, accounts=accounts)
    source = KafkaEventSource(settings.kafka, settings.source)
    service = Service(settings, shards, delivery, source, starters, closers, clock=clock)
    service.on_reload.append(geo.reload)  # SIGHUP: reopen GeoIP databases, re-read risky lists

    if settings.http.enabled:
        app = build_app(metrics, service.readiness)
        api.mount(app, settings.api.token, lambda: postgres_sink.pool if postgres_sink else None, settings.api.max_limit)
        http = HttpServer(app, settings.http.host, settings.http.port)
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
            if settings.networks.shared.enabled and geo.shared is not None:
                await shared_sync.start()

        async def sync_shared_networks() -> None:
            """Merge the learnt shared networks with the other processes' (one SQL upsert)."""
            async with pool_holder["pool"].acquire() as conn:
                await shared_networks.sync(conn, geo.shared)

        shared_sync = Periodic("shared networks", settings.networks.shared.sync_interval, sync_shared_networks)

        async def close_store() -> None:
            await shared_sync.close()
            if pool_holder.get("pool") is not None:
                await pool_holder.pop("pool").close()

        starters.append(start_store)
        closers.append(close_store)

    starters.append(producer.start)
    starters.append(delivery.start)
    closers.append(delivery.close)
    closers.append(producer.stop)
    if postgres_sink is not None:
        wire_delivery(settings, postgres_sink, gate, publishers, relays, metrics, starters, closers)
    return service


def build_publishers(settings: Settings, producer=None) -> list:
    """The external alert sinks enabled in [sinks.*]. Without a `producer`, a Kafka sink owns one."""
    from sinks.alertmanager import AlertmanagerSink
    from sinks.kafka_alerts import KafkaAlertSink
    from sinks.mqtt import MqttAlertSink
    from sinks.webhook import WebhookAlertSink

    check_sinks(settings)
    s = settings.sinks
    publishers: list = []
    if s.mqtt.enabled:
        publishers.append(MqttAlertSink(s.mqtt))
    if s.kafka.enabled:
        owned = producer is None
        if owned:
            from aiokafka import AIOKafkaProducer

            producer = AIOKafkaProducer(
                **client_options(settings.kafka), acks="all", enable_idempotence=settings.kafka.idempotent_producer
            )
        publishers.append(KafkaAlertSink(producer, s.kafka.topic, s.kafka.min_severity, s.kafka.timeout, owns_producer=owned))
    if s.webhook.enabled:
        publishers.append(WebhookAlertSink(s.webhook))
    if s.alertmanager.enabled:
        publishers.append(AlertmanagerSink(s.alertmanager))
    return publishers


def check_sinks(settings: Settings) -> None:
    """Settings an enabled sink cannot work without; a ConfigError names the key."""
    s = settings.sinks
    if s.webhook.enabled and not (s.webhook.url and s.webhook.secret):
        raise ConfigError("sinks.webhook: needs url and secret (PORTAL_MONITOR_SINKS__WEBHOOK__SECRET or secret_file)")
    if s.alertmanager.enabled and not s.alertmanager.url:
        raise ConfigError("sinks.alertmanager: needs url")


def wire_delivery(settings, postgres_sink, gate, publishers, relays, metrics, starters, closers) -> None:
    """After the store is connected: seed the gate, start the outbox relays and the periodic jobs
    (silences and verdict totals, retention)."""
    from monitor.response import queries as responder
    from monitor.alerting.gate import silences_from_settings
    from monitor.service.housekeeping import Periodic, load_silences, warm_gate
    from monitor.store.retention import purge

    pool = lambda: postgres_sink.pool  # noqa: E731 - the pool exists once start_store ran
    metrics.add_outbox_sinks(p.name for p in publishers)
    for publisher in publishers:
        relays.append(OutboxRelay(publisher, pool, metrics, settings.delivery))
    configured = silences_from_settings(settings)

    async def refresh() -> None:
        await load_silences(pool(), gate, configured)
        # groups opened by another process (partitions taken over in a rebalance)
        await warm_gate(pool(), gate)
        metrics.alert_verdicts.update(await responder.verdict_totals(pool()))

    async def retention() -> None:
        purged = await purge(pool(), settings.retention.keep_for, settings.retention.chunk)
        for kind in ("sessions", "alerts"):
            metrics.retention_purged.labels(kind).inc(purged[kind])
        if any(purged.values()):
            log.info("retention purge", keep_days=round(settings.retention.keep_for / 86400), **purged)

    jobs = [Periodic("silences-and-verdicts", settings.alerting.silence_refresh, refresh)]
    if settings.retention.enabled:
        jobs.append(Periodic("retention", settings.retention.interval, retention))

    async def start_delivery() -> None:
        try:
            await load_silences(pool(), gate, configured)
            seeded = await warm_gate(pool(), gate)
            log.info("alert gate ready", groups_from_store=seeded, silences=len(gate.silences))
        except Exception as error:
            log.warning("alert gate not seeded from the store", error=f"{type(error).__name__}: {error}")
        for job in jobs:
            await job.start()
        for relay in relays:
            await relay.start()
        if relays:
            log.info("outbox relays started", sinks=[relay.sink for relay in relays])

    async def close_delivery() -> None:
        for relay in relays:
            await relay.close()
        for job in jobs:
            await job.close()

    starters.append(start_delivery)
    closers.append(close_delivery)
