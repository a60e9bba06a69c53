"""Alerts about a source (password_spray) in the store: the source column, `alerts list --source`
with an address or a network, the gate grouping them per source (also when seeded from the store)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
import pytest
import structlog

from monitor import store
from monitor.alerting.gate import AlertGate
from monitor.commands.cli import main
from monitor.response import queries as responder
from monitor.service.config import load_settings
from monitor.service.housekeeping import warm_gate
from monitor.service.offline import build_offline_pipeline, start_offline
from monitor.support.metrics import Metrics
from detectors.registry import detector_ids
from sinks.postgres import PostgresSink

pytestmark = pytest.mark.integration
CASE = Path(__file__).parent / "detector_cases" / "password_spray_later_success_is_critical"


class Collect:
    name = "collect"

    def __init__(self) -> None:
        self.findings = []

    async def start(self) -> None: ...
    async def close(self) -> None: ...

    async def write(self, findings) -> None:
        self.findings.append(findings)


async def seed(dsn: str) -> list:
    settings = load_settings(None, environ={})
    sink = Collect()
    pipeline = build_offline_pipeline(settings, [sink], Metrics(detector_ids(), [sink.name]))
    await start_offline(pipeline)
    lines = [line for line in CASE.joinpath("events.jsonl").read_bytes().splitlines() if line.strip()]
    await pipeline.run_file([list(enumerate(lines))])
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        await store.migrate(pool)
        for findings in sink.findings:
            await PostgresSink(pool).write(findings)
    finally:
        await pool.close()
    return [a for f in sink.findings for a in f.alerts]


async def listed(dsn: str, source: str) -> list[dict]:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        return await responder.list_alerts(pool, source=source)
    finally:
        await pool.close()


def test_source_alerts_are_stored_listed_and_grouped_by_source(postgres_dsn, monkeypatch, capsys):
    alerts = asyncio.run(seed(postgres_dsn))
    spray = next(a for a in alerts if a.severity == "high")
    worked = next(a for a in alerts if a.severity == "critical")
    assert spray.account_id == "" and spray.source == "203.0.113.0/24" == worked.source

    for query in ("203.0.113.66", "203.0.113.0/24", "203.0.0.0/16"):
        assert {r["alert_id"] for r in asyncio.run(listed(postgres_dsn, query))} == {spray.alert_id, worked.alert_id}
    assert asyncio.run(listed(postgres_dsn, "198.51.100.0/24")) == []
    with pytest.raises(ValueError, match="not an IP address or network"):
        asyncio.run(listed(postgres_dsn, "203.0.113.0/24' OR '1'='1"))

    monkeypatch.setenv("PORTAL_MONITOR_POSTGRES__DSN", postgres_dsn)
    capsys.readouterr()  # the seeding's log lines
    try:
        code = main(["alerts", "list", "--source", "203.0.113.7", "--format", "json"])
    finally:
        structlog.reset_defaults()
    rows = json.loads(capsys.readouterr().out)
    assert code == 0 and sorted(r["source"] for r in rows) == ["203.0.113.0/24"] * 2
    assert {r["account_id"] for r in rows} == {"", worked.account_id}

    # Seeded from the store, the gate groups a repeat of the spray by its source, and not with
    # a spray from another source.
    async def gate_from_store() -> AlertGate:
        gate = AlertGate(cooldown=3600)
        pool = await asyncpg.create_pool(postgres_dsn, min_size=1, max_size=1)
        try:
            await warm_gate(pool, gate)
        finally:
            await pool.close()
        return gate

    gate = asyncio.run(gate_from_store())
    from monitor.engine.findings import Findings
    from msgspec.structs import replace

    again, elsewhere = Findings(), Findings()
    again.alerts.append(replace(spray, alert_id="x" * 32))
    elsewhere.alerts.append(replace(spray, alert_id="y" * 32, source="198.51.100.0/24"))
    assert [r.alert_id for r in gate.apply(again).repeats] == [spray.alert_id]
    assert [a.alert_id for a in gate.apply(elsewhere).alerts] == ["y" * 32]


def test_a_silence_by_network_covers_the_addresses_of_a_spray_or_a_brute_force() -> None:
    from monitor.alerting.gate import Silence
    from monitor.contract.alerts import new_alert
    from monitor.engine.findings import Findings

    def alert(detector: str, addresses: list[str], account: str = "") -> object:
        return new_alert(detector=detector, severity="high", account_id=account, at=1_772_000_000.0,
                         trigger=str(addresses), session_ids=[], summary="", evidence={"addresses": addresses},
                         policy="", source="203.0.113.0/24" if not account else None)

    pentest = Silence(network="203.0.113.0/24", expires=float("inf"), reason="the council's pen test")
    gate = AlertGate(cooldown=0, silences=[pentest])
    findings = Findings()
    findings.alerts += [alert("password_spray", ["203.0.113.66", "203.0.113.67"]),
                        alert("brute_force", ["203.0.113.9"], "staff-0042"),
                        alert("brute_force", ["198.51.100.4"], "staff-0043")]
    gated = gate.apply(findings)
    assert [a.detector for a, _ in gated.silenced] == ["password_spray", "brute_force"]
    assert [a.account_id for a in gated.alerts] == ["staff-0043"]
