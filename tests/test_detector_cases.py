"""Detector tests as data: each folder under detector_cases/ holds events in, alerts out.

A case folder has `events.jsonl` (portal.event/v1 records, in arrival order), `expected.json`
(a list of {"detector", "account_id", "severity", "session_ids"} the run must raise, nothing more) and
optionally `settings.toml` (overrides of the defaults) and `accounts.csv` (a roster imported
into the account registry first, imported at the time of the first event). Add a case by
adding a folder.

Each case runs through the same pipeline as `portal-monitor replay` (one shard, the in-memory
account registry), once with the whole file as one batch and once one event per batch: the
alerts must not depend on how the stream was cut into batches.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from datetime import datetime

import msgspec
import pytest

from detectors.registry import detector_ids
from monitor.config import load_settings
from monitor.engine import Findings
from monitor.metrics import Metrics
from monitor.offline import build_offline_pipeline, start_offline

CASES = Path(__file__).parent / "detector_cases"


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


async def replay_case(folder: Path, batch_size: int | None = None, registry=None) -> Collect:
    settings_file = folder / "settings.toml"
    settings = load_settings(settings_file if settings_file.exists() else None, environ={})
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


def run_case(folder: Path, batch_size: int | None = None) -> list[dict]:
    sink = asyncio.run(replay_case(folder, batch_size))
    assert not sink.dead_letters, [d.detail for d in sink.dead_letters]
    return [
        {"detector": a.detector, "account_id": a.account_id, "severity": a.severity, "session_ids": a.session_ids}
        for a in sink.alerts
    ]


def _key(alert: dict) -> str:
    return json.dumps(alert, sort_keys=True)


FOLDERS = sorted(p for p in CASES.iterdir() if p.is_dir())

# Cases whose outcome still depends on batching, with why. Strict: fixing one fails the test
# until it is taken off this list.
BATCH_DEPENDENT: dict[str, str] = {}


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_case(folder: Path) -> None:
    expected = json.loads((folder / "expected.json").read_text())
    assert run_case(folder) == expected


@pytest.mark.parametrize(
    "folder",
    [
        pytest.param(p, marks=pytest.mark.xfail(reason=BATCH_DEPENDENT[p.name], strict=True))
        if p.name in BATCH_DEPENDENT
        else p
        for p in FOLDERS
    ],
    ids=lambda p: p.name,
)
def test_case_one_event_per_batch(folder: Path) -> None:
    expected = json.loads((folder / "expected.json").read_text())
    assert sorted(run_case(folder, batch_size=1), key=_key) == sorted(expected, key=_key)
