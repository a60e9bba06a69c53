"""Writers of records other than alerts that the findings carry (dead letters, actions): as JSON
lines to a file (replay), or to a Kafka topic, waiting for the broker's acknowledgement (live).

A subclass names itself and says which records of a batch it takes (`select`) and, for Kafka,
the record key (`key`).
"""

from __future__ import annotations

from typing import IO, Any, Sequence

import msgspec

from monitor.engine.findings import Findings


class FileRecords:
    """Appends the selected records to a JSONL file, created on the first one."""

    name = "records"

    def __init__(self, path: str) -> None:
        self.path = path
        self.written = 0
        self._out: IO[bytes] | None = None
        self._encode = msgspec.json.Encoder().encode

    def select(self, findings: Findings) -> Sequence[Any]:
        raise NotImplementedError

    async def start(self) -> None:
        pass

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


class KafkaRecords:
    """Produces the selected records to a topic and waits until the broker acknowledged all."""

    name = "records"

    def __init__(self, producer, topic: str) -> None:
        self.producer = producer
        self.topic = topic
        self._encode = msgspec.json.Encoder().encode

    def select(self, findings: Findings) -> Sequence[Any]:
        raise NotImplementedError

    def key(self, record: Any) -> bytes:
        raise NotImplementedError

    async def start(self) -> None:
        pass

    async def write(self, findings: Findings) -> None:
        records = self.select(findings)
        if not records:
            return
        deliveries = [await self.producer.send(self.topic, self._encode(r), key=self.key(r)) for r in records]
        for delivery in deliveries:
            await delivery

    async def close(self) -> None:
        pass
