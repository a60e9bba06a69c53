"""`portal-monitor repartition` against a real broker: every record re-keyed, none lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tests.support.daemon import create_topic

pytestmark = pytest.mark.integration


async def test_raw_topic_is_rekeyed_by_account(kafka_broker):
    await create_topic(kafka_broker.bootstrap, 3, "portal.raw")
    await create_topic(kafka_broker.bootstrap, 4, "portal.events")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
    await producer.start()
    sent = []
    for n in range(300):
        record = {"event_id": f"e{n}", "type": "page_view", "ts": "2026-03-02T08:00:00Z",
                  "account_id": f"acct-{n % 17}", "session_id": "s", "resource": "/x"}
        raw = json.dumps(record).encode()
        sent.append(raw)
        await producer.send_and_wait("portal.raw", raw, partition=n % 3)  # round robin, not by account
    await producer.send_and_wait("portal.raw", b'{"type": "page_view"}', partition=0)
    # poison that stopped the relay for good (issue 13): msgspec's RecursionError, a tombstone
    await producer.send_and_wait("portal.raw", b'{"account_id":"a","x":' + b"[" * 1000 + b"]" * 1000 + b"}", partition=1)
    await producer.send_and_wait("portal.raw", None, key=b"gone", partition=2)
    await producer.stop()

    env = dict(os.environ, PORTAL_MONITOR_KAFKA__BOOTSTRAP_SERVERS=kafka_broker.bootstrap,
               PORTAL_MONITOR_KAFKA__IDEMPOTENT_PRODUCER="false", PORTAL_MONITOR_SOURCE__SESSION_TIMEOUT="6s")
    done = subprocess.run([sys.executable, "-m", "monitor", "repartition", "portal.raw", "--until-caught-up"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "relayed 300 records" in done.stderr and "3 to portal.events.dlq" in done.stderr

    consumer = AIOKafkaConsumer("portal.events", bootstrap_servers=kafka_broker.bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    received = []
    try:
        while True:  # to the end of the topic: a retried batch may have relayed a record twice
            batch = await consumer.getmany(timeout_ms=3000)
            if not batch:
                break
            received += [(tp.partition, r.key, r.value) for tp, rs in batch.items() for r in rs]
    finally:
        await consumer.stop()
    # At least once: every record arrived, nothing else did (a repeat is allowed, a loss is not).
    assert set(value for _, _, value in received) == set(sent) and len(received) >= len(sent)
    partitions_of = {}
    for partition, key, value in received:
        assert key == json.loads(value)["account_id"].encode()
        partitions_of.setdefault(key, set()).add(partition)
    assert all(len(parts) == 1 for parts in partitions_of.values())  # one account, one partition
    assert len({p for parts in partitions_of.values() for p in parts}) > 1
