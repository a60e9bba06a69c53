"""The Kafka side of the benchmark: load a topic, the bare-consumer limit, and watching commits.

The limit is what a consumer on this machine can do with no monitor at all: an aiokafka
consumer in a fresh group looping over `getmany` (the same fetch settings as the daemon's
source), and the same loop decoding every record with msgspec into `PortalEvent` and nothing
else. Both are timed like the daemon: from the group's partition assignment (the broker's
join delay excluded) to the last record.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Iterable

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from monitor.contract.events import PortalEvent

# The daemon's source settings (monitor/ingest/sources/kafka.py), so the limit reads the same way.
FETCH_OPTIONS = dict(
    max_poll_records=5000,
    fetch_max_bytes=64 * 1024 * 1024,
    max_partition_fetch_bytes=16 * 1024 * 1024,
)


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, records: Iterable[tuple[bytes, bytes, int | None]]) -> int:
    """Produce (key, value, partition or None) records as fast as the broker takes them; how many."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=5, max_batch_size=256 * 1024
    )
    await producer.start()
    sent = 0
    try:
        pending = []
        for key, value, partition in records:
            pending.append(await producer.send(topic, value, key=key, partition=partition))
            sent += 1
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


async def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        return {tp.partition: offset for tp, offset in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


class _Assigned(ConsumerRebalanceListener):
    def __init__(self) -> None:
        self.at: float | None = None

    async def on_partitions_revoked(self, revoked) -> None:
        pass

    async def on_partitions_assigned(self, assigned) -> None:
        if assigned and self.at is None:
            self.at = time.perf_counter()


async def bare_consume(
    bootstrap: str, topic: str, expected: int, *, decode: bool, session_timeout: float, timeout: float = 300.0
) -> dict:
    """Read `expected` records in a fresh group; records/s from assignment to the last record."""
    listener = _Assigned()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"bench-bare-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=int(session_timeout * 1000),
        heartbeat_interval_ms=max(100, int(session_timeout * 1000) // 3),
        **FETCH_OPTIONS,
    )
    decoder = msgspec.json.Decoder(PortalEvent).decode
    started = time.perf_counter()
    await consumer.start()
    consumer.subscribe([topic], listener=listener)
    count = decoded = 0
    first = None
    try:
        while count < expected:
            if time.perf_counter() - started > timeout:
                raise TimeoutError(f"bare consumer read {count} of {expected} records in {timeout} s")
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            for records in batch.values():
                if first is None and records:
                    first = time.perf_counter()
                count += len(records)
                if decode:
                    for record in records:
                        decoder(record.value)
                        decoded += 1
        done = time.perf_counter()
    finally:
        await consumer.stop()
    assigned = listener.at if listener.at is not None else started
    seconds = done - assigned
    return {
        "records": count,
        "decoded": decoded,
        "seconds": seconds,
        "events_per_second": count / seconds,
        "group_join_seconds": assigned - started,
        "assigned_to_first_record_seconds": (first or done) - assigned,
    }


async def wait_committed(bootstrap: str, topic: str, group: str, want: dict[int, int], timeout: float, poll: float = 0.02) -> float:
    """Poll the group's committed offsets until each partition reached `want`; perf_counter then."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    deadline = time.perf_counter() + timeout
    tps = [TopicPartition(topic, p) for p in want]
    try:
        while True:
            committed = {}
            for tp in tps:
                committed[tp.partition] = (await consumer.committed(tp)) or 0
            now = time.perf_counter()
            if all(committed[p] >= offset for p, offset in want.items()):
                return now
            if now > deadline:
                raise TimeoutError(f"group {group} committed {committed}, want {want}")
            await asyncio.sleep(poll)
    finally:
        await consumer.stop()
