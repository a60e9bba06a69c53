"""`portal-monitor replay` over a file with malformed lines and redelivered events."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CASE = Path(__file__).parent / "detector_cases" / "two_live_sessions_two_networks" / "events.jsonl"


def replay(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "monitor", "replay", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_malformed_lines_and_duplicates_are_counted_never_fatal(tmp_path):
    good = CASE.read_text().splitlines()
    lines = [
        good[0], good[1],
        "this is not json",
        "[1, 2, 3]",
        json.dumps({"event_id": "z1", "type": "teleport", "ts": "2026-03-02T08:00:00Z", "account_id": "a"}),
        json.dumps({"event_id": "z2", "type": "logout", "ts": "yesterday", "account_id": "a", "session_id": "s"}),
        json.dumps({"event_id": "z3", "type": "login_succeeded", "ts": "2026-03-02T08:00:00Z", "account_id": "a",
                    "session_id": "s", "ip": "300.1.1.1"}),
        json.dumps({"event_id": "z4", "type": "page_view", "ts": "2026-03-02T08:00:00Z", "account_id": "a",
                    "session_id": "s"}),
        json.dumps({"event_id": "x" * 129, "type": "logout", "ts": "2026-03-02T08:00:00Z", "account_id": "a",
                    "session_id": "s"}),
        good[2], good[2], good[3], good[2],  # the second login redelivered three times
        "",  # a blank line: counted as `empty`, not skipped silently
    ]
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(lines) + "\n")
    # 7 of 13 records are bad: over the default --max-invalid 0.5, so allow them all here
    done = replay(str(events), "--alerts-out", str(tmp_path / "alerts.jsonl"), "--summary", "json",
                  "--max-invalid", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stderr.strip().splitlines()[-1])
    assert summary["invalid"] == {"not_json": 1, "not_object": 1, "unknown_type": 1, "bad_timestamp": 1,
                                  "bad_ip": 1, "missing_field": 1, "oversized_field": 1, "empty": 1}
    assert summary["outcomes"] == {"processed": 4, "duplicate": 2}
    alerts = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert [a["detector"] for a in alerts] == ["simultaneous_logins"]
    dead = [json.loads(line) for line in (tmp_path / "events.jsonl.dead-letters.jsonl").read_text().splitlines()]
    assert [d["offset"] for d in dead] == [3, 4, 5, 6, 7, 8, 9, 14]  # line numbers, for a person to look up
    assert dead[0]["raw"] == "this is not json"


def test_replaying_twice_gives_the_same_alert_ids(tmp_path):
    first = replay(str(CASE), "--alerts-out", str(tmp_path / "a.jsonl"), cwd=tmp_path)
    second = replay(str(CASE), "--alerts-out", str(tmp_path / "b.jsonl"), cwd=tmp_path)
    assert first.returncode == second.returncode == 0
    ids = lambda p: [json.loads(line)["alert_id"] for line in p.read_text().splitlines()]  # noqa: E731
    assert ids(tmp_path / "a.jsonl") == ids(tmp_path / "b.jsonl") != []


def test_a_missing_file_is_a_clear_error(tmp_path):
    done = replay(str(tmp_path / "nope.jsonl"), cwd=tmp_path)
    assert done.returncode == 1
    assert "cannot read" in done.stderr and "Traceback" not in done.stderr
