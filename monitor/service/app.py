"""The composition root: settings in, every client, detector and sink built and wired here.

Nothing else in the code base creates a client or reads configuration; parts receive what
they need as arguments.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable

import structlog

from detectors.registry import detector_ids, location_detector_ids
from monitor.response import api
from monitor.response import console
from monitor.accounts.lifecycle import AccountLifecycle
from monitor.accounts.postgres import PostgresRegistry
from monitor.alerting.gate import build_gate
from monitor.service.checkpoints import CheckpointSettings, CheckpointStore
from monitor.service.config import ConfigError, Settings
from monitor.service.http import HttpServer, build_app
from monitor.ingest.kafka_client import client_options, start_client
from monitor.support.metrics import Metrics
from monitor.delivery.outbox import OutboxRelay
from monitor.delivery.delivery import Delivery
from monitor.support.retry import Backoff, retrying
from monitor.engine.shards import Shards
from monitor.service.network_stage import NetworkStageService
from monitor.service.lifecycle import Part, Service
from monitor.store import Store
from monitor.places import shared_networks
from monitor.places.geo import GeoServices
from monitor.service.housekeeping import Periodic
from monitor.service.shards import build_shard
from monitor.state.interning import pupil_ids
from monitor.ingest.sources.kafka import KafkaEventSource
from sinks.actions import KafkaActions
from sinks.dead_letters import KafkaDeadLetters
from sinks.jsonl import JsonlAlertSink
from sinks.login_outcomes import KafkaLoginOutcomes
from sinks.outbound import DirectAlertSink
from sinks.postgres import PostgresSink

log = structlog.get_logger("monitor.service.app")


async def open_store(store: Store, stop: asyncio.Event) -> None:
    """Connect and migrate, retrying with backoff until it works or a stop is requested."""

    async def wait(delay: float) -> None:
        try:
            await asyncio.wait_for(stop.wait(), timeout=delay)
        except asyncio.TimeoutError:
            pass

    from monitor.store import dsn_endpoint

    host, port, database = dsn_endpoint(store.settings.dsn)

    async def attempt() -> None:
        # said before each attempt: an attempt may wait connect_timeout for a server that never answers
        log.info("connecting to the store", host=host, port=port, database=database,
                 timeout_s=float(store.settings.connect_timeout))
        await store.open()

    await retrying(attempt, what="connecting to the store", backoff=Backoff(0.5, 30.0), log=log,
                   give_up=stop.is_set, wait=wait)


def account_lifecycle(settings: Settings, metrics: Metrics, store=None) -> AccountLifecycle:
    """Dormancy and account status over the PostgreSQL registry (`run`, `demo`)."""
    detectors = settings.detectors
    return AccountLifecycle(
        PostgresRegistry(store), detectors.dormant_account, detectors.dormant_account_login, metrics=metrics,
        write_every=settings.accounts.write_every, write_limit=settings.accounts.write_limit,
    )


def build_service(settings: Settings, clock: Callable[[], float] = time.time) -> Service:
    """The live daemon, fully wired but not started. `clock`: the wall clock for quiet shards.

    Every part is built whole here and handed what it needs; `Service.run` starts the parts in
    the order of `parts` and closes the started ones in reverse.
    """
    from aiokafka import AIOKafkaProducer

    check_sinks(settings)
    parts: list[Part] = []
    stop = asyncio.Event()
    wants_store = settings.sinks.postgres.enabled or settings.accounts.registry
    store = Store(settings.postgres) if wants_store else None
    if store is not None:
        parts.append(Part("store", lambda: open_store(store, stop), store.close))

    producer = AIOKafkaProducer(**client_options(settings.kafka), acks="all", enable_idempotence=settings.kafka.idempotent_producer)
    parts.append(Part("kafka producer", lambda: start_client(producer, settings.kafka, "producer"), producer.stop))
    sinks: list = [KafkaDeadLetters(producer, settings.source.dead_letter_topic)]
    if settings.sinks.actions.enabled:
        sinks.append(KafkaActions(producer, settings.sinks.actions.topic))
    if settings.sinks.jsonl.enabled:
        sinks.append(JsonlAlertSink(settings.sinks.jsonl.path, settings.sinks.jsonl.min_severity))
    by_source = settings.detectors.password_spray.enabled
    if by_source:  # the shards' half of the group-by: login outcomes to the repartition topic
        sinks.append(KafkaLoginOutcomes(producer, settings.network_stage.topic))
    publishers = build_publishers(settings, producer)
    relays: list[OutboxRelay] = []
    postgres_sink = None
    if settings.sinks.postgres.enabled:
        postgres_sink = PostgresSink(
            pool=store,
            min_severity=settings.sinks.postgres.min_severity,
            outbox=[(p.name, p.min_severity) for p in publishers],
            on_outbox=lambda: [relay.wake.set() for relay in relays],
        )
        sinks.append(postgres_sink)
    else:
        sinks.extend(DirectAlertSink(p) for p in publishers)  # no outbox without PostgreSQL
    metrics = Metrics(detector_ids(), [sink.name for sink in sinks])
    gate = build_gate(settings)
    geo = GeoServices.from_settings(settings, location_detector_ids())  # one per process: GeoIP readers, lists, shared networks
    accounts = account_lifecycle(settings, metrics, store) if settings.accounts.registry else None
    if accounts is not None:
        parts.append(Part("account registry", accounts.start, _nothing))
    if store is not None and settings.networks.shared.enabled and geo.shared is not None:

        async def sync_shared_networks() -> None:
            """Merge the learnt shared networks with the other processes' (one SQL upsert)."""
            async with store.acquire() as conn:
                await shared_networks.sync(conn, geo.shared)

        shared_sync = Periodic("shared networks", settings.networks.shared.sync_interval, sync_shared_networks)
        parts.append(Part("shared networks sync", shared_sync.start, shared_sync.close))

    pupils = pupil_ids()  # one copy of each pupil id for every partition's shard
    shards = Shards(
        # The disabled and revoked accounts as the registry knew them when the partition came.
        lambda partition: build_shard(
            settings, partition, geo=geo, restricted=accounts.restricted if accounts is not None else None,
            pupil_ids=pupils,
        ),
        metrics,
    )
    delivery = Delivery(sinks, metrics, gate=gate, accounts=accounts)
    parts.append(Part("sinks", delivery.start, delivery.close))
    if postgres_sink is not None:
        parts.append(delivery_part(settings, store, gate, publishers, relays, metrics))
    checkpoints = None
    if store is not None and settings.checkpoint.enabled:
        checkpoints = CheckpointStore(store, settings.source.group_id, settings.source.topic, settings.checkpoint)
    source = KafkaEventSource(settings.kafka, settings.source)
    if by_source:
        # The network stage's half: its own consumer group on the repartition topic, its state
        # checkpointed like the shards' (under its own group and topic). Last: it starts once the
        # store and the sinks are up, and stops first.
        stage = settings.network_stage
        stage_checkpoints = None
        if store is not None and settings.checkpoint.enabled:
            # the stage's state is small: whole checkpoints, no deltas
            stage_checkpoints = CheckpointStore(store, stage.group_id, stage.topic, CheckpointSettings(incremental=False))
        stage_service = NetworkStageService(settings, delivery, metrics, stop, checkpoints=stage_checkpoints)
        parts.append(Part("network stage", stage_service.start, stage_service.close))
    if settings.http.enabled:
        app = build_app(metrics, lambda: service.readiness())
        store_pool = store.pool_or_none if postgres_sink is not None else (lambda: None)
        api.mount(app, settings.api.token, store_pool, settings.api.max_limit)
        if settings.api.console:
            console.mount(app, responder_token=settings.api.token, viewer_token=settings.api.viewer_token,
                          session_lifetime=settings.api.session_lifetime, pool=store_pool, detector_ids=detector_ids(),
                          registry=metrics.registry)
        http = HttpServer(app, settings.http.host, settings.http.port)
        parts.insert(0, Part("http", http.start, http.close))  # first: /livez and /readyz while starting
    service = Service(settings, shards, delivery, source, parts, checkpoints=checkpoints, clock=clock, stop=stop)
    service.on_reload.append(geo.reload)  # SIGHUP: reopen GeoIP databases, re-read risky lists
    return service


async def _nothing() -> None:
    return None


def build_publishers(settings: Settings, producer=None) -> list:
    """The external alert sinks enabled in [sinks.*]. Without a `producer`, a Kafka sink owns one."""
    from sinks.alertmanager import AlertmanagerPublisher
    from sinks.kafka_alerts import KafkaPublisher
    from sinks.mqtt import MqttPublisher
    from sinks.webhook import WebhookPublisher

    check_sinks(settings)
    s = settings.sinks
    publishers: list = []
    if s.mqtt.enabled:
        publishers.append(MqttPublisher(s.mqtt))
    if s.kafka.enabled:
        owned = producer is None
        if owned:
            from aiokafka import AIOKafkaProducer

            producer = AIOKafkaProducer(
                **client_options(settings.kafka), acks="all", enable_idempotence=settings.kafka.idempotent_producer
            )
        publishers.append(KafkaPublisher(producer, s.kafka.topic, s.kafka.min_severity, s.kafka.timeout, owns_producer=owned, include_pupils=s.kafka.include_pupils))
    if s.webhook.enabled:
        publishers.append(WebhookPublisher(s.webhook))
    if s.alertmanager.enabled:
        publishers.append(AlertmanagerPublisher(s.alertmanager))
    return publishers


def check_sinks(settings: Settings) -> None:
    """Settings an enabled sink cannot work without; a ConfigError names the key."""
    s = settings.sinks
    if s.webhook.enabled and not (s.webhook.url and s.webhook.secret):
        raise ConfigError("sinks.webhook: needs url and secret (PORTAL_MONITOR_SINKS__WEBHOOK__SECRET or secret_file)")
    if s.alertmanager.enabled and not s.alertmanager.url:
        raise ConfigError("sinks.alertmanager: needs url")


def delivery_part(settings, store, gate, publishers, relays, metrics) -> Part:
    """Once the store is connected: seed the gate, start the outbox relays and the periodic jobs
    (silences and verdict totals, retention)."""
    from monitor.response import queries
    from monitor.alerting.gate import silences_from_settings
    from monitor.service.housekeeping import load_silences, warm_gate
    from monitor.store.retention import purge, purge_pupil_access

    metrics.add_outbox_sinks(p.name for p in publishers)
    for publisher in publishers:
        relays.append(OutboxRelay(publisher, store.pool_or_none, metrics, settings.delivery))
    configured = silences_from_settings(settings)

    async def refresh() -> None:
        await load_silences(store.pool, gate, configured)
        # groups opened by another process (partitions taken over in a rebalance)
        await warm_gate(store.pool, gate)
        metrics.alert_verdicts.update(await queries.verdict_totals(store.pool))

    async def retention() -> None:
        purged = await purge(store.pool, settings.retention.keep_for, settings.retention.chunk)
        purged["pupil_access"] = await purge_pupil_access(store.pool, settings.pupils.access_keep_for, settings.retention.chunk)
        for kind in ("sessions", "alerts", "pupil_access"):
            metrics.retention_purged.labels(kind).inc(purged[kind])
        if any(purged.values()):
            log.info("retention purge", keep_days=round(settings.retention.keep_for / 86400), **purged)

    jobs = [Periodic("silences-and-verdicts", settings.alerting.silence_refresh, refresh)]
    if settings.retention.enabled:
        jobs.append(Periodic("retention", settings.retention.interval, retention))

    async def start() -> None:
        try:
            await load_silences(store.pool, gate, configured)
            seeded = await warm_gate(store.pool, gate)
            log.info("alert gate ready", groups_from_store=seeded, silences=len(gate.silences))
        except Exception as error:
            log.warning("alert gate not seeded from the store", error=f"{type(error).__name__}: {error}")
        for job in jobs:
            await job.start()
        for relay in relays:
            await relay.start()
        if relays:
            log.info("outbox relays started", sinks=[relay.sink for relay in relays])

    async def close() -> None:
        for relay in relays:
            await relay.close()
        for job in jobs:
            await job.close()

    return Part("outbox and housekeeping", start, close)
