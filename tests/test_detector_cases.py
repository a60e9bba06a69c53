"""Detector tests as data: each folder under detector_cases/ holds events in, alerts out.

A case folder has `events.jsonl` (portal.event/v1 records, in arrival order), `expected.json`
(a list of {"detector", "account_id", "severity", "session_ids"} the run must raise, nothing more) and
optionally `settings.toml` (overrides of the defaults). Add a case by adding a folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monitor.config import load_settings
from monitor.shards import build_shard

CASES = Path(__file__).parent / "detector_cases"


def run_case(folder: Path) -> list[dict]:
    settings_file = folder / "settings.toml"
    settings = load_settings(settings_file if settings_file.exists() else None, environ={})
    shard = build_shard(settings, partition=0)
    lines = (folder / "events.jsonl").read_bytes().splitlines()
    records = [(offset, line) for offset, line in enumerate(lines) if line.strip()]
    findings = shard.process(records)
    findings.extend(shard.drain())
    assert not findings.dead_letters, [d.detail for d in findings.dead_letters]
    return [
        {"detector": a.detector, "account_id": a.account_id, "severity": a.severity, "session_ids": a.session_ids}
        for a in findings.alerts
    ]


@pytest.mark.parametrize("folder", sorted(p for p in CASES.iterdir() if p.is_dir()), ids=lambda p: p.name)
def test_case(folder: Path) -> None:
    expected = json.loads((folder / "expected.json").read_text())
    assert run_case(folder) == expected
