"""Dead letters: records that broke the contract, kept whole with their reason.

In replay they go to a JSONL file; live, to the Kafka topic `portal.events.dlq` (key: the
reason, value: the dead letter as JSON), so nothing is lost and an operator can re-drive them.
"""

from __future__ import annotations

import msgspec

from monitor.engine.findings import Findings


class FileDeadLetters:
    """Appends dead letters to a JSONL file, created on the first one."""

    name = "dead_letters"

    def __init__(self, path: str) -> None:
        self.path = path
        self.written = 0
        self._out = None
        self._encode = msgspec.json.Encoder().encode

    async def start(self) -> None:
        pass

    async def write(self, findings: Findings) -> None:
        if not findings.dead_letters:
            return
        if self._out is None:
            self._out = open(self.path, "ab")
        self._out.write(b"".join(self._encode(letter) + b"\n" for letter in findings.dead_letters))
        self._out.flush()
        self.written += len(findings.dead_letters)

    async def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


class KafkaDeadLetters:
    """Produces dead letters to a topic and waits for the broker's acknowledgement."""

    name = "dead_letters"

    def __init__(self, producer, topic: str) -> None:
        self.producer = producer
        self.topic = topic
        self._encode = msgspec.json.Encoder().encode

    async def start(self) -> None:
        pass

    async def write(self, findings: Findings) -> None:
        if not findings.dead_letters:
            return
        batch = [
            await self.producer.send(self.topic, self._encode(letter), key=letter.reason.encode())
            for letter in findings.dead_letters
        ]
        for delivery in batch:
            await delivery

    async def close(self) -> None:
        pass
