"""`portal-monitor demo` (the README's first command) works on the embedded PostgreSQL."""

from __future__ import annotations

import re
import subprocess
import sys


def test_demo_finds_the_injected_incidents(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "demo", "--data-dir", str(tmp_path / "demo"),
         "--accounts", "400", "--events", "20000", "--days", "3"],
        capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "PORTAL_MONITOR_HTTP__PORT": "0"},
    )
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    match = re.search(r"Injected incidents for the enabled detectors: (\d+); caught (\d+), missed (\d+); "
                      r"alerts on must-stay-quiet accounts: (\d+)", done.stdout)
    assert match, done.stdout[-3000:]
    expected, caught, missed, false_alarms = map(int, match.groups())
    assert expected >= 1 and caught == expected and missed == 0 and false_alarms == 0
    assert re.search(r"\d+ flagged session\(s\) with [1-9]\d* item\(s\) viewed", done.stdout)
    assert (tmp_path / "demo" / "school-day.jsonl").stat().st_size > 0
