"""Dead letters: records that broke the contract, kept whole with their reason.

In replay they go to a JSONL file; live, to the Kafka topic `portal.events.dlq` (key: the
reason, value: the dead letter as JSON), so nothing is lost and an operator can re-drive them.

A dead letter never stalls delivery: its raw record is cut to a bounded size by the engine
(`monitor.ingest.decode.DEAD_LETTER_RAW_LIMIT`, with the original length and SHA-256), and a
letter the broker still refuses as too large is sent again with its raw record cut to 1 KiB.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import msgspec

from monitor.engine.findings import DeadLetter, Findings
from sinks.records import FileRecords, KafkaRecords


SHORT_RAW = 1024  # bytes of the raw record kept when the broker refused the letter as too large


class FileDeadLetters(FileRecords):
    """Dead letters to a JSONL file (replay), created on the first one."""

    name = "dead_letters"

    def select(self, findings: Findings) -> Sequence[dict]:
        # From a file the offset is the line number: written as `line` too, to say where to look.
        return [{"line": letter.offset, **msgspec.structs.asdict(letter)} for letter in findings.dead_letters]


class KafkaDeadLetters(KafkaRecords):
    """Dead letters to the dead-letter topic, keyed by their reason."""

    name = "dead_letters"

    def select(self, findings: Findings) -> Sequence[DeadLetter]:
        return findings.dead_letters

    def key(self, letter: DeadLetter) -> bytes:
        return letter.reason.encode()

    def shortened(self, letter: DeadLetter) -> DeadLetter:
        return shortened(letter)


def shortened(letter: DeadLetter) -> DeadLetter:
    """`letter` with its raw record cut to `SHORT_RAW` bytes, keeping the original's length and hash."""
    data = letter.raw.encode("utf-8", "surrogatepass")
    return DeadLetter(
        reason=letter.reason,
        detail=letter.detail[:256],
        partition=letter.partition,
        offset=letter.offset,
        raw=data[:SHORT_RAW].decode("utf-8", "ignore"),
        raw_length=letter.raw_length if letter.raw_length is not None else len(data),
        raw_sha256=letter.raw_sha256 or hashlib.sha256(data).hexdigest(),
    )
