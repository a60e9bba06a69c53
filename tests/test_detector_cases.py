"""Detector tests as data: each folder under detector_cases/ holds events in, alerts out.

A case folder has `events.jsonl` (portal.event/v1 records, in arrival order), `expected.json`
(a list of {"detector", "account_id", "severity", "session_ids"} the run must raise, nothing more) and
optionally `settings.toml` (overrides of the defaults). Add a case by adding a folder.

Location cases may also have:
- `geoip.json`: {"networks": [{cidr, country, city, lat, lon, radius_km, asn, org, kind}, ...]},
  written as City/ASN/Anonymous-IP .mmdb files in a temporary directory and set as
  `geoip.city_db`, `geoip.asn_db` and `geoip.anonymous_db` (the settings may still override);
- `warnings.json`: a list of texts; the run must log exactly that many warnings, each
  containing its text, in order.
The case runs in its folder, so relative paths in `settings.toml` (risky-network lists) are
files of the case. An expected alert may add "summary_contains" (a list of texts),
"policy_contains" (a text) and "evidence" (a subset of the alert's evidence).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
import structlog

from monitor.config import load_settings
from monitor.geoip_demo import write_databases
from monitor.shards import build_shard

CASES = Path(__file__).parent / "detector_cases"
FIELDS = ("detector", "account_id", "severity", "session_ids")


def case_settings(folder: Path, tmp_path: Path | None = None, **overrides: str):
    environ: dict[str, str] = {}
    geo_file = folder / "geoip.json"
    if geo_file.exists():
        assert tmp_path is not None
        paths = write_databases(json.loads(geo_file.read_text())["networks"], tmp_path / "geoip")
        environ.update({f"PORTAL_MONITOR_GEOIP__{key.upper()}": path for key, path in paths.items()})
    environ.update(overrides)
    settings_file = folder / "settings.toml"
    return load_settings(settings_file if settings_file.exists() else None, environ=environ)


def run_case(folder: Path, tmp_path: Path | None = None, **overrides: str) -> tuple[list[Any], list[dict]]:
    """(alerts, warning log entries) of replaying the case's events through one shard."""
    with structlog.testing.capture_logs() as logs:
        settings = case_settings(folder, tmp_path, **overrides)
        shard = build_shard(settings, partition=0)
        lines = (folder / "events.jsonl").read_bytes().splitlines()
        records = [(offset, line) for offset, line in enumerate(lines) if line.strip()]
        findings = shard.process(records)
        findings.extend(shard.drain())
    assert not findings.dead_letters, [d.detail for d in findings.dead_letters]
    return findings.alerts, [entry for entry in logs if entry["log_level"] == "warning"]


def _subset(expected: Any, actual: Any) -> bool:
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and _subset(v, actual[k]) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and len(expected) == len(actual) and all(map(_subset, expected, actual))
    return expected == actual


@pytest.mark.parametrize("folder", sorted(p for p in CASES.iterdir() if p.is_dir()), ids=lambda p: p.name)
def test_case(folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(folder)
    expected = json.loads((folder / "expected.json").read_text())
    alerts, warnings = run_case(folder, tmp_path)
    assert [{k: getattr(a, k) for k in FIELDS} for a in alerts] == [{k: e[k] for k in FIELDS} for e in expected]
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
