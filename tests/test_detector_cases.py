"""Detector tests as data: each folder under detector_cases/ holds events in, alerts out.

A case folder has `events.jsonl` (portal.event/v1 records, in arrival order), `expected.json`
(a list of {"detector", "account_id", "severity", "session_ids"} the run must raise, nothing
more) and optionally:
- `settings.toml`: overrides of the defaults (relative paths are files of the case: the case
  runs in its folder, e.g. risky-network lists);
- `accounts.csv`: a roster imported into the account registry first, at the time of the
  first event;
- `geoip.json`: {"networks": [{cidr, country, city, lat, lon, radius_km, asn, org, kind}, ...]},
  written as City/ASN/Anonymous-IP .mmdb files in a temporary directory and set as
  `geoip.city_db`, `geoip.asn_db` and `geoip.anonymous_db` (the settings may still override);
- `warnings.json`: a list of texts; the run must log exactly that many warnings, each
  containing its text, in order.
An expected alert may add "summary_contains" (a list of texts), "policy_contains" (a text)
and "evidence" (a subset of the alert's evidence). Add a case by adding a folder.

Each case runs through the same pipeline as `portal-monitor replay` (one shard, the in-memory
account registry), once with the whole file as one batch and once one event per batch: the
alerts must not depend on how the stream was cut into batches.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
import structlog

from detectors.registry import detector_ids
from monitor.service.config import load_settings
from monitor.engine.findings import Findings
from monitor.places.geoip_demo import write_databases
from monitor.support.metrics import Metrics
from monitor.service.offline import build_offline_pipeline, start_offline

CASES = Path(__file__).parent / "detector_cases"
FIELDS = ("detector", "account_id", "severity", "session_ids")
FOLDERS = sorted(p for p in CASES.iterdir() if p.is_dir())


class Collect:
    """A sink that keeps what it is given."""

    name = "collect"

    def __init__(self) -> None:
        self.alerts: list = []
        self.dead_letters: list = []

    async def start(self) -> None:
        pass

    async def write(self, findings: Findings) -> None:
        self.alerts.extend(findings.alerts)
        self.dead_letters.extend(findings.dead_letters)

    async def close(self) -> None:
        pass


def case_settings(folder: Path, tmp_path: Path | None = None, **overrides: str):
    environ: dict[str, str] = {}
    geo_file = folder / "geoip.json"
    if geo_file.exists():
        if tmp_path is None:
            import tempfile

            tmp_path = Path(tempfile.mkdtemp(prefix="pm-case-geoip-"))
        paths = write_databases(json.loads(geo_file.read_text())["networks"], tmp_path / "geoip")
        environ.update({f"PORTAL_MONITOR_GEOIP__{key.upper()}": path for key, path in paths.items()})
    environ.update(overrides)
    settings_file = folder / "settings.toml"
    return load_settings(settings_file if settings_file.exists() else None, environ=environ)


async def replay_case(folder: Path, batch_size: int | None = None, registry=None, settings=None) -> Collect:
    if settings is None:
        settings = case_settings(folder)
    lines = (folder / "events.jsonl").read_bytes().splitlines()
    records = [(offset, line) for offset, line in enumerate(lines) if line.strip()]
    roster = folder / "accounts.csv"
    first_at = min(msgspec.json.decode(line)["ts"] for _, line in records) if records else None
    now = datetime.fromisoformat(first_at).timestamp() if first_at is not None else None
    sink = Collect()
    pipeline = build_offline_pipeline(settings, [sink], Metrics(detector_ids(), [sink.name]), registry)
    await start_offline(pipeline, str(roster) if roster.exists() else None, now=now)
    size = batch_size or max(len(records), 1)
    await pipeline.run_file(records[start : start + size] for start in range(0, len(records), size))
    return sink


def run_case(folder: Path, tmp_path: Path | None = None, batch_size: int | None = None, **overrides: str):
    """(alerts, warning log entries) of replaying the case's events."""
    with structlog.testing.capture_logs() as logs:
        settings = case_settings(folder, tmp_path, **overrides)
        sink = asyncio.run(replay_case(folder, batch_size, settings=settings))
    assert not sink.dead_letters, [d.detail for d in sink.dead_letters]
    return sink.alerts, [entry for entry in logs if entry["log_level"] == "warning"]


def _subset(expected: Any, actual: Any) -> bool:
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and _subset(v, actual[k]) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and len(expected) == len(actual) and all(map(_subset, expected, actual))
    return expected == actual


def _core(alerts) -> list[dict]:
    return [{k: getattr(a, k) for k in FIELDS} for a in alerts]


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_case(folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(folder)
    expected = json.loads((folder / "expected.json").read_text())
    alerts, warnings = run_case(folder, tmp_path)
    assert _core(alerts) == [{k: e[k] for k in FIELDS} for e in expected]
    for alert, wanted in zip(alerts, expected):
        for text in wanted.get("summary_contains", []):
            assert text in alert.summary, alert.summary
        if "policy_contains" in wanted:
            assert wanted["policy_contains"] in alert.policy, alert.policy
        if "evidence" in wanted:
            evidence = msgspec.to_builtins(alert.evidence)
            assert _subset(wanted["evidence"], evidence), evidence
    warnings_file = folder / "warnings.json"
    if warnings_file.exists():
        texts = json.loads(warnings_file.read_text())
        assert len(warnings) == len(texts), warnings
        for entry, text in zip(warnings, texts):
            assert text in entry["event"], entry


def _key(alert: dict) -> str:
    return json.dumps(alert, sort_keys=True)


# The account registry written every batch ("0s"), and only when a sweep, a status change or
# the end needs it ("1h"): in between, the dormancy checks read it through the unwritten
# activity (monitor.accounts.unwritten), and must find exactly the same alerts.
@pytest.mark.parametrize("write_every", ["0s", "1h"])
@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_case_one_event_per_batch(folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_every: str) -> None:
    monkeypatch.chdir(folder)
    expected = json.loads((folder / "expected.json").read_text())
    alerts, _ = run_case(folder, tmp_path, batch_size=1, PORTAL_MONITOR_ACCOUNTS__WRITE_EVERY=write_every)
    assert sorted(_core(alerts), key=_key) == sorted(({k: e[k] for k in FIELDS} for e in expected), key=_key)
