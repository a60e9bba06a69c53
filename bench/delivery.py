"""Delivery through the outbox: latency from the alert's commit to its receipt, and throughput.

    .venv/bin/python bench/delivery.py [--alerts 2000] [--batch 50]

Needs PostgreSQL (PORTAL_MONITOR_TEST_POSTGRES, default 127.0.0.1:5432; a temporary database
is created and dropped) and Mosquitto on 127.0.0.1:1883; starts a local webhook receiver.
Both relays run as in the daemon; the numbers are end to end: PostgreSQL transaction,
claim, publish with acknowledgement (PUBACK / HTTP 200), mark delivered.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiomqtt  # noqa: E402
import asyncpg  # noqa: E402
from aiohttp import web  # noqa: E402

from monitor import store  # noqa: E402
from monitor.contract.alerts import new_alert  # noqa: E402
from monitor.service.config import DeliverySettings, MqttSinkSettings, WebhookSinkSettings  # noqa: E402
from monitor.engine.shard import Findings  # noqa: E402
from monitor.support.metrics import Metrics  # noqa: E402
from monitor.delivery.outbox import OutboxRelay  # noqa: E402
from sinks.mqtt import MqttPublisher  # noqa: E402
from sinks.postgres import PostgresSink  # noqa: E402
from sinks.webhook import WebhookPublisher  # noqa: E402
from tests.support.servers import PostgresServer, free_port  # noqa: E402


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def main(count: int, batch: int, server: PostgresServer) -> None:
    database = await server.create_database()
    pool = await asyncpg.create_pool(server.dsn_for(database), min_size=2, max_size=6)
    await store.migrate(pool)
    committed: dict[str, float] = {}
    received: dict[str, dict[str, float]] = {"mqtt": {}, "webhook": {}}

    async def hook(request: web.Request) -> web.Response:
        received["webhook"][json.loads(await request.read())["alert_id"]] = time.perf_counter()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    prefix = f"pm-bench-{uuid.uuid4().hex[:8]}/alerts"
    metrics = Metrics([])
    settings = DeliverySettings()
    relays = []
    sink = PostgresSink(pool, outbox=[("mqtt", "low"), ("webhook", "low")], on_outbox=lambda: [r.wake.set() for r in relays])
    relays += [
        OutboxRelay(MqttPublisher(MqttSinkSettings(topic_prefix=prefix, client_id=f"pm-bench-{uuid.uuid4().hex[:6]}")), lambda: pool, metrics, settings),
        OutboxRelay(WebhookPublisher(WebhookSinkSettings(url=f"http://127.0.0.1:{port}/hook", secret="bench")), lambda: pool, metrics, settings),
    ]
    try:
        async with aiomqtt.Client("127.0.0.1", 1883, identifier=f"pm-bench-sub-{uuid.uuid4().hex[:6]}") as subscriber:
            await subscriber.subscribe(f"{prefix}/#", qos=1)

            async def collect() -> None:
                async for message in subscriber.messages:
                    received["mqtt"][json.loads(message.payload)["alert_id"]] = time.perf_counter()

            collector = asyncio.create_task(collect())
            for relay in relays:
                await relay.start()
            started = time.perf_counter()
            for first in range(0, count, batch):
                findings = Findings()
                findings.alerts = [
                    new_alert(detector="simultaneous_logins", severity="high", account_id=f"staff-{n}", at=1.77e9 + n,
                              trigger=f"s{n}", session_ids=[f"s{n}"], summary="bench", evidence={}, policy="p")
                    for n in range(first, min(first + batch, count))
                ]
                await sink.write(findings)
                now = time.perf_counter()
                for alert in findings.alerts:
                    committed[alert.alert_id] = now
                await asyncio.sleep(0)
            wrote = time.perf_counter() - started
            deadline = time.perf_counter() + 120
            while any(len(r) < count for r in received.values()) and time.perf_counter() < deadline:
                await asyncio.sleep(0.01)
            elapsed = time.perf_counter() - started
            collector.cancel()
    finally:
        for relay in relays:
            await relay.close()
        await runner.cleanup()
        await pool.close()
        await server.drop_database(database)
    for name in ("mqtt", "webhook"):
        samples = {s.name: s.value for fam in metrics.sink_seconds.collect() for s in fam.samples if s.labels.get("sink") == name}
        mean = 1000 * samples["portal_monitor_sink_write_seconds_sum"] / max(samples["portal_monitor_sink_write_seconds_count"], 1)
        print(f"  {name}: publish to acknowledgement, mean {mean:.2f} ms")
    print(f"{count} alerts in batches of {batch}; stored in {wrote:.2f} s ({count / wrote:,.0f} alerts/s into PostgreSQL + outbox)")
    for name, times in received.items():
        latencies = [1000 * (times[a] - committed[a]) for a in committed if a in times]
        print(
            f"  {name:8} delivered {len(times)}/{count} in {elapsed:.2f} s ({len(times) / elapsed:,.0f}/s); latency after commit "
            f"p50 {statistics.median(latencies):.1f} ms, p95 {percentile(latencies, 95):.1f} ms, max {max(latencies):.1f} ms"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.alerts, args.batch, PostgresServer()))
