"""Events from a JSON-lines file or standard input, read in batches of lines.

Offsets are line numbers (1-based), so a dead letter says which line to look at.
"""

from __future__ import annotations

import os
import sys
from typing import BinaryIO, Iterator


class JsonlEventFile:
    """Reads `path` (or stdin for `-`) in batches of (line number, raw line)."""

    def __init__(self, path: str, batch_lines: int = 5000) -> None:
        self.path = path
        self.batch_lines = batch_lines
        self.bytes_read = 0
        self.size = os.path.getsize(path) if path != "-" and os.path.isfile(path) else None

    def _open(self) -> BinaryIO:
        return sys.stdin.buffer if self.path == "-" else open(self.path, "rb", buffering=1 << 20)

    def batches(self) -> Iterator[list[tuple[int, bytes]]]:
        stream = self._open()
        try:
            batch: list[tuple[int, bytes]] = []
            number = 0
            for line in stream:
                number += 1
                self.bytes_read += len(line)
                if not line.strip():
                    continue
                batch.append((number, line))
                if len(batch) >= self.batch_lines:
                    yield batch
                    batch = []
            if batch:
                yield batch
        finally:
            if stream is not sys.stdin.buffer:
                stream.close()
