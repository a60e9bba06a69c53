"""The sink interface: a sink acknowledges a batch of findings by returning, or raises."""

from __future__ import annotations

from typing import Protocol

from monitor.contract.alerts import SEVERITY_RANK, Alert
from monitor.engine.findings import Findings


class Sink(Protocol):
    """Where findings go. `write` returns only once the findings are durable there."""

    name: str

    async def start(self) -> None: ...

    async def write(self, findings: Findings) -> None: ...

    async def close(self) -> None: ...


def at_least(alerts: list[Alert], min_severity: str) -> list[Alert]:
    """The alerts at or above a sink's minimum severity."""
    floor = SEVERITY_RANK[min_severity]
    if floor == 0:
        return alerts
    return [alert for alert in alerts if SEVERITY_RANK[alert.severity] >= floor]
