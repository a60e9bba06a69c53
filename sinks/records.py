"""Writers of records other than alerts that the findings carry (dead letters, actions): as JSON
lines to a file (replay), or to a Kafka topic, waiting for the broker's acknowledgement (live).

A subclass names itself and says which records of a batch it takes (`select`) and, for Kafka,
the record key (`key`).
"""

from __future__ import annotations

from typing import IO, Any, Sequence

import msgspec

from monitor.engine.findings import Findings


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
    """Appends the selected records to a JSONL file, created on the first one."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.written = 0
        self._out: IO[bytes] | None = None

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

    async def write(self, findings: Findings) -> None:
        records = self.select(findings)
        if not records:
            return
        deliveries = [await self.producer.send(self.topic, self._encode(r), key=self.key(r)) for r in records]
        for delivery in deliveries:
            await delivery

    async def close(self) -> None:
        pass
