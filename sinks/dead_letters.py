"""Dead letters: records that broke the contract, kept whole with their reason.

In replay they go to a JSONL file; live, to the Kafka topic `portal.events.dlq` (key: the
reason, value: the dead letter as JSON), so nothing is lost and an operator can re-drive them.
"""

from __future__ import annotations

from typing import Sequence

from monitor.engine.findings import DeadLetter, Findings
from sinks.records import FileRecords, KafkaRecords


class FileDeadLetters(FileRecords):
    """Dead letters to a JSONL file (replay), created on the first one."""

    name = "dead_letters"

    def select(self, findings: Findings) -> Sequence[DeadLetter]:
        return findings.dead_letters


class KafkaDeadLetters(KafkaRecords):
    """Dead letters to the dead-letter topic, keyed by their reason."""

    name = "dead_letters"

    def select(self, findings: Findings) -> Sequence[DeadLetter]:
        return findings.dead_letters

    def key(self, letter: DeadLetter) -> bytes:
        return letter.reason.encode()
