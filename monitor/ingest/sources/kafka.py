"""Events from a Kafka topic through a consumer group, committed only after the sinks acknowledged.

Partitions come and go with rebalances; the listener tells the service so each partition
has exactly one shard in the group. Auto-commit is off: the daemon commits the offsets the
service says are safe, after delivery.
"""

from __future__ import annotations

from typing import Awaitable, Callable, Iterable

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from monitor.ingest.kafka_client import KafkaSettings, SourceSettings, client_options

log = structlog.get_logger("monitor.ingest.sources.kafka")


class PartitionListener(ConsumerRebalanceListener):
    """Forwards assignments and revocations (awaited by aiokafka before it rejoins)."""

    def __init__(
        self,
        on_assigned: Callable[[list[int]], Awaitable[None]],
        on_revoked: Callable[[list[int]], Awaitable[None]],
    ) -> None:
        self.on_assigned = on_assigned
        self.on_revoked = on_revoked

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        partitions = sorted(tp.partition for tp in revoked)
        if partitions:
            log.info("partitions revoked", partitions=partitions)
            await self.on_revoked(partitions)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        partitions = sorted(tp.partition for tp in assigned)
        log.info("partitions assigned", partitions=partitions)
        await self.on_assigned(partitions)


class KafkaEventSource:
    """The `portal.events` topic through the consumer group `group_id`."""

    def __init__(self, kafka: KafkaSettings, source: SourceSettings) -> None:
        self.source = source
        self.kafka = kafka
        self.consumer = AIOKafkaConsumer(
            **client_options(kafka),
            group_id=source.group_id,
            enable_auto_commit=False,
            auto_offset_reset=source.auto_offset_reset,
            session_timeout_ms=int(source.session_timeout * 1000),
            heartbeat_interval_ms=max(100, int(source.session_timeout * 1000) // 3),
            max_poll_records=source.batch_max_records,
            fetch_max_wait_ms=int(source.fetch_max_wait * 1000),
            fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=16 * 1024 * 1024,
        )

    async def start(self, listener: PartitionListener) -> None:
        from monitor.ingest.kafka_client import start_client

        await start_client(self.consumer, self.kafka, "consumer")
        self.consumer.subscribe([self.source.topic], listener=listener)

    async def batch(self) -> dict[int, list[tuple[int, bytes]]]:
        """The next records, by partition; empty when nothing arrived within the poll timeout."""
        fetched = await self.consumer.getmany(
            timeout_ms=int(self.source.poll_timeout * 1000), max_records=self.source.batch_max_records
        )
        # A record with a null value (a tombstone) is kept: the shard counts it (`empty`).
        return {tp.partition: [(record.offset, record.value) for record in records] for tp, records in fetched.items()}

    def seek(self, partition: int, offset: int) -> None:
        self.consumer.seek(TopicPartition(self.source.topic, partition), offset)

    async def keepalive(self) -> None:
        """Stay in the group while the sinks are down: pause every partition and poll briefly.

        Paused partitions return nothing, so nothing is read and memory stays bounded, but the
        poll keeps the member alive (max.poll.interval) and lets rebalances complete.
        """
        assigned = self.consumer.assignment()
        if assigned:
            self.consumer.pause(*assigned)
        await self.consumer.getmany(timeout_ms=200)

    def resume(self) -> None:
        paused = self.consumer.paused()
        if paused:
            self.consumer.resume(*paused)

    def partition_count(self) -> int | None:
        """Partitions of the topic (account ownership is key hash modulo this), once metadata is known."""
        partitions = self.consumer.partitions_for_topic(self.source.topic)
        return len(partitions) if partitions else None

    async def commit(self, offsets: dict[int, int]) -> None:
        assigned = {tp.partition for tp in self.consumer.assignment()}
        to_commit = {
            TopicPartition(self.source.topic, partition): OffsetAndMetadata(offset, "")
            for partition, offset in offsets.items()
            if partition in assigned
        }
        if to_commit:
            await self.consumer.commit(to_commit)

    def lag(self, positions: dict[int, int]) -> dict[int, int]:
        """Records behind the high watermark per partition, given the next offset to read."""
        lags = {}
        for tp in self.consumer.assignment():
            highwater = self.consumer.highwater(tp)
            position = positions.get(tp.partition)
            if highwater is not None and position is not None:
                lags[tp.partition] = max(0, highwater - position)
        return lags

    async def stop(self) -> None:
        await self.consumer.stop()
