"""Alerts as JSON lines (`portal.alert/v1`, one per line) to a file or standard output."""

from __future__ import annotations

import sys
from typing import IO

import msgspec

from monitor.engine.findings import Findings
from sinks.base import at_least
from monitor.contract.settings import Section
from monitor.contract.alerts import Severity


class JsonlAlertSink:
    """Writes each alert as one line; flushed (and fsynced for files) before acknowledging."""

    def __init__(self, path: str = "-", min_severity: str = "low", name: str = "jsonl", append: bool = True) -> None:
        self.name = name
        self.path = path
        self.append = append  # False: a file of an earlier run is replaced (replay)
        self.min_severity = min_severity
        self._encode = msgspec.json.Encoder().encode
        self._out: IO[bytes] | None = None

    async def start(self) -> None:
        self._out = sys.stdout.buffer if self.path == "-" else open(self.path, "ab" if self.append else "wb")

    async def write(self, findings: Findings) -> None:
        alerts = at_least(findings.alerts, self.min_severity)
        if not alerts or self._out is None:
            return
        self._out.write(b"".join(self._encode(alert) + b"\n" for alert in alerts))
        self._out.flush()

    async def close(self) -> None:
        if self._out is not None and self.path != "-":
            self._out.close()
        self._out = None


class JsonlSinkSettings(Section):
    enabled: bool = False
    path: str = "-"
    min_severity: Severity = "low"
