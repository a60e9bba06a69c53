"""Writers of records other than alerts that the findings carry (dead letters, actions): as JSON
lines to a file (replay), or to a Kafka topic, waiting for the broker's acknowledgement (live).

A subclass names itself and says which records of a batch it takes (`select`) and, for Kafka,
the record key (`key`) and, if it can, a shorter form of a record the broker refused as too
large (`shortened`), so one record never stalls delivery.
"""

from __future__ import annotations

import contextlib
import os
from typing import IO, Any, Sequence

import msgspec
import structlog
from aiokafka.errors import MessageSizeTooLargeError, RecordTooLargeError

from monitor.engine.findings import Findings

log = structlog.get_logger("sinks.records")
TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError)


class Records:
    """What both writers share: a name, which records of a batch they take, JSON encoding."""

    name = "records"

    def __init__(self) -> None:
        self._encode = msgspec.json.Encoder().encode

    def select(self, findings: Findings) -> Sequence[Any]:
        raise NotImplementedError  # each subclass says which records it writes

    async def start(self) -> None:
        pass


class FileRecords(Records):
    """Writes the selected records to a JSONL file, created on the first one. With `append`
    off (replay's default) the file of an earlier run is removed at start, so a run that writes
    nothing leaves no stale file either."""

    def __init__(self, path: str, append: bool = True) -> None:
        super().__init__()
        self.path = path
        self.append = append
        self.written = 0
        self._out: IO[bytes] | None = None

    async def start(self) -> None:
        if not self.append:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    async def write(self, findings: Findings) -> None:
        records = self.select(findings)
        if not records:
            return
        if self._out is None:
            self._out = open(self.path, "ab")
        self._out.write(b"".join(self._encode(record) + b"\n" for record in records))
        self._out.flush()
        self.written += len(records)

    async def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


class KafkaRecords(Records):
    """Produces the selected records to a topic and waits until the broker acknowledged all."""

    def __init__(self, producer, topic: str) -> None:
        super().__init__()
        self.producer = producer
        self.topic = topic

    def key(self, record: Any) -> bytes:
        raise NotImplementedError  # each subclass says what its records are keyed by

    def shortened(self, record: Any) -> Any | None:
        """A smaller form of `record` for a broker that refused it as too large; None: none."""
        return None

    async def write(self, findings: Findings) -> None:
        records = self.select(findings)
        if not records:
            return
        deliveries = []
        for record in records:
            try:
                deliveries.append(await self.producer.send(self.topic, self._encode(record), key=self.key(record)))
            except TOO_LARGE as error:  # refused before sending
                deliveries.append(error)
        for record, delivery in zip(records, deliveries):
            try:
                if isinstance(delivery, Exception):
                    raise delivery
                await delivery
            except TOO_LARGE:
                short = self.shortened(record)
                if short is None:
                    raise
                log.warning("record too large for the broker; sent shortened", sink=self.name, topic=self.topic)
                await (await self.producer.send(self.topic, self._encode(short), key=self.key(short)))

    async def close(self) -> None:
        pass
