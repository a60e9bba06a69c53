"""Re-key a raw topic by account_id, so every event of an account lands in one partition.

The detectors' state is per account and owned by the shard of the partition holding the
account; a producer that partitions by anything else (web server, round robin) breaks that.
This relay reads the raw topic in its own consumer group, takes only `account_id` from each
record (the value is passed on byte for byte), produces to the detectors' topic keyed by
account_id, and commits the raw offsets only after the broker acknowledged every produce.
Records without a usable account_id go to the dead-letter topic with the reason.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

import msgspec
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from monitor.ingest.decode import bounded_raw, classify
from monitor.support.retry import Backoff, retrying
from monitor.ingest.kafka_client import KafkaSettings, SourceSettings, client_options, start_client

log = structlog.get_logger("monitor.ingest.repartition")


class KeyedRecord(msgspec.Struct):
    account_id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class RepartitionStats(msgspec.Struct):
    relayed: int = 0
    dead_letters: int = 0


class Repartitioner:
    """Raw topic in, account-keyed topic out, at least once."""

    def __init__(self, kafka: KafkaSettings, source: SourceSettings, raw_topic: str, group_id: str, batch_max_records: int = 5000) -> None:
        self.raw_topic = raw_topic
        self.target_topic = source.topic
        self.dead_letter_topic = source.dead_letter_topic
        options = client_options(kafka)
        self.consumer = AIOKafkaConsumer(
            raw_topic,
            **options,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(source.session_timeout * 1000),
            heartbeat_interval_ms=max(100, int(source.session_timeout * 1000) // 3),
        )
        self.producer = AIOKafkaProducer(
            **options, acks="all", enable_idempotence=kafka.idempotent_producer, linger_ms=5
        )
        self.batch_max_records = batch_max_records
        self.stats = RepartitionStats()
        self._decode = msgspec.json.Decoder(KeyedRecord).decode
        self._encode = msgspec.json.Encoder().encode
        self.stop_requested = asyncio.Event()
        self.kafka = kafka

    async def run(self, until_caught_up: bool = False) -> RepartitionStats:
        await start_client(self.producer, self.kafka, "producer")  # KafkaUnreachable names servers and cause
        await start_client(self.consumer, self.kafka, "consumer")
        try:
            while not self.stop_requested.is_set():
                fetched = await self.consumer.getmany(timeout_ms=500, max_records=self.batch_max_records)
                if fetched:
                    await self._relay_until_acknowledged(fetched)
                    await self.consumer.commit()
                elif until_caught_up and await self._caught_up():
                    break
        finally:
            await self.consumer.stop()
            await self.producer.stop()
        return self.stats

    async def _relay_until_acknowledged(self, fetched) -> None:
        """Relay a batch; on a retriable broker error (a leader moving, a topic being
        auto-created) relay the whole batch again after a backoff. The raw offsets are not
        committed until it went through, so a record may reach the target twice, never zero
        times; the monitor drops the repeat by its event_id."""
        counted = (self.stats.relayed, self.stats.dead_letters)

        async def relay() -> None:
            self.stats.relayed, self.stats.dead_letters = counted  # a repeat counts once
            await self._relay(fetched)

        await retrying(
            relay, what="relaying a batch", backoff=Backoff(0.2, 10.0), log=log,
            give_up=self.stop_requested.is_set,
            retriable=lambda error: isinstance(error, KafkaError) and error.retriable,
        )

    async def _relay(self, fetched) -> None:
        deliveries = []
        for tp, records in fetched.items():
            for record in records:
                try:
                    if not record.value or not record.value.strip():
                        raise ValueError("a record with no value or a blank one")
                    account_id = self._decode(record.value).account_id
                except (msgspec.MsgspecError, RecursionError, ValueError) as error:
                    if isinstance(error, msgspec.MsgspecError):
                        reason = classify(error)
                    else:
                        reason = "too_deep" if isinstance(error, RecursionError) else "empty"
                    raw, length, digest = bounded_raw(record.value)
                    letter = {
                        "reason": reason,
                        "detail": str(error)[:1024],
                        "topic": tp.topic,
                        "partition": tp.partition,
                        "offset": record.offset,
                        "raw": raw,
                    }
                    if length is not None:
                        letter.update(raw_length=length, raw_sha256=digest)
                    deliveries.append(await self.producer.send(self.dead_letter_topic, self._encode(letter)))
                    self.stats.dead_letters += 1
                    continue
                deliveries.append(
                    await self.producer.send(self.target_topic, record.value, key=account_id.encode())
                )
                self.stats.relayed += 1
        # Every produce acknowledged before the raw offsets are committed; gathered so that one
        # failure leaves no other delivery's outcome unretrieved.
        outcomes = await asyncio.gather(*deliveries, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _caught_up(self) -> bool:
        assignment = self.consumer.assignment()
        if not assignment:
            return False
        ends = await self.consumer.end_offsets(list(assignment))
        for tp in assignment:
            if await self.consumer.position(tp) < ends[tp]:
                return False
        return True
