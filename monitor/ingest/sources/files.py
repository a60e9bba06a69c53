"""Events from a JSON-lines file or standard input, read in batches of lines.

Offsets are line numbers (1-based), so a dead letter says which line to look at. A
gzip-compressed file (or stream) is read as it is; other compressed formats are refused by name.
"""

from __future__ import annotations

import gzip
import os
import sys
from typing import BinaryIO, Iterator

GZIP_MAGIC = b"\x1f\x8b"
# Formats we do not read, by their first bytes: refused with their name, not read as lines of noise.
OTHER_COMPRESSION = {
    b"BZh": ("bzip2", "bzip2 -dc"),
    b"\xfd7zXZ\x00": ("xz", "xz -dc"),
    b"\x28\xb5\x2f\xfd": ("zstd", "zstd -dc"),
    b"PK\x03\x04": ("zip", "unzip -p"),
}


class UnreadableInput(ValueError):
    """The input is in a format that is not JSON lines (and not gzip); the message says which."""


class JsonlEventFile:
    """Reads `path` (or stdin for `-`) in batches of (line number, raw line)."""

    def __init__(self, path: str, batch_lines: int = 5000) -> None:
        self.path = path
        self.batch_lines = batch_lines
        self.bytes_read = 0  # of the file as stored (compressed, for gzip), for progress
        self.size = os.path.getsize(path) if path != "-" and os.path.isfile(path) else None
        self.compressed = False
        if path != "-":
            with open(path, "rb") as stream:  # fails here, before any work, if it cannot be read
                self.compressed = self._sniff(stream.read(8))

    def _sniff(self, head: bytes) -> bool:
        """True for gzip; raises `UnreadableInput` for another compressed format."""
        if head.startswith(GZIP_MAGIC):
            return True
        for magic, (name, command) in OTHER_COMPRESSION.items():
            if head.startswith(magic):
                name_in_command = self.path if self.path != "-" else "FILE"
                raise UnreadableInput(
                    f"{self.path} is {name}-compressed, not JSON lines: "
                    f"{command} {name_in_command} | portal-monitor replay -"
                )
        return False

    def _open(self) -> tuple[BinaryIO, BinaryIO | None]:
        """(the stream of lines, the stored file under it when it is decompressed)."""
        if self.path == "-":
            raw = sys.stdin.buffer
            if self._sniff(raw.peek(8)[:8] if hasattr(raw, "peek") else b""):
                return gzip.GzipFile(fileobj=raw), None
            return raw, None
        raw = open(self.path, "rb", buffering=1 << 20)
        if self.compressed:
            return gzip.GzipFile(fileobj=raw), raw
        return raw, None

    def batches(self) -> Iterator[list[tuple[int, bytes]]]:
        stream, stored = self._open()
        try:
            number = 0
            pending: list[tuple[int, bytes]] = []
            while True:
                try:
                    lines = stream.readlines(self.batch_lines * 200)  # about batch_lines lines
                except (gzip.BadGzipFile, EOFError, OSError) as error:
                    raise UnreadableInput(f"{self.path}: broken gzip data after line {number:,}: {error}") from None
                if not lines:
                    break
                if stored is not None:
                    self.bytes_read = stored.tell()
                else:
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
            if stored is not None:
                stored.close()
