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
            number = 0
            pending: list[tuple[int, bytes]] = []
            while True:
                lines = stream.readlines(self.batch_lines * 200)  # about batch_lines lines
                if not lines:
                    break
                self.bytes_read += sum(map(len, lines))
                # every line keeps its number, so offsets stay line numbers; a blank one is
                # rejected as `empty` by the decoder, so it is counted, not skipped silently
                pending.extend(enumerate(lines, number + 1))
                number += len(lines)
                while len(pending) >= self.batch_lines:
                    yield pending[: self.batch_lines]
                    del pending[: self.batch_lines]
            if pending:
                yield pending
        finally:
            if stream is not sys.stdin.buffer:
                stream.close()
