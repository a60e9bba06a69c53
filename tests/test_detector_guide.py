"""docs/detectors.md runs: its example detector, built from the page's code block, raises exactly
the alerts of the page's expected.json over the page's events.jsonl."""

from __future__ import annotations

import json
import re
import types
from pathlib import Path

from detectors.base import DetectorContext
from monitor.engine.shard import Shard
from monitor.ingest.decode import EventDecoder
from monitor.places.networks import NetworkMap
from monitor.state.sessions import SessionTable

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "detectors.md"
BLOCK = re.compile(r"^```(\w+) (\S+)\n(.*?)^```", re.M | re.S)


def blocks() -> dict[str, str]:
    return {name: body for _, name, body in BLOCK.findall(GUIDE.read_text())}


def test_the_guide_has_its_three_blocks() -> None:
    assert set(blocks()) == {"detectors/example_many_views.py", "events.jsonl", "expected.json"}


def test_the_example_detector_raises_what_the_guide_says() -> None:
    found = blocks()
    module = types.ModuleType("example_many_views")
    exec(compile(found["detectors/example_many_views.py"], "example_many_views.py", "exec"), module.__dict__)
    networks = NetworkMap([])
    sessions = SessionTable(networks, idle_timeout=1800, max_duration=12 * 3600, max_items=100)
    detector = module.ExampleManyViews(module.ExampleManyViewsSettings(max_views=3), DetectorContext(sessions, networks))
    shard = Shard(0, decoder=EventDecoder(networks), sessions=sessions, detectors=[detector],
                  allowed_lateness=2.0, dedup_window=1000, max_clock_skew=float("inf"))
    records = list(enumerate(line.encode() for line in found["events.jsonl"].splitlines() if line.strip()))
    findings = shard.process(records)
    findings.extend(shard.drain())
    assert not findings.dead_letters, [letter.detail for letter in findings.dead_letters]
    got = [{"detector": a.detector, "account_id": a.account_id, "severity": a.severity, "session_ids": a.session_ids}
           for a in findings.alerts]
    assert got == json.loads(found["expected.json"])
    assert "viewed 4 items" in findings.alerts[0].summary
