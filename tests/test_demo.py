"""`portal-monitor demo` (the README's first command) works on the embedded PostgreSQL."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def enterable(tmp_path: Path, request) -> Path:
    """`tmp_path`, or as root a folder the embedded PostgreSQL (which then runs as a user of its
    own) can enter: pytest's base folder is private to root."""
    if os.geteuid() != 0:
        return tmp_path
    folder = Path(tempfile.mkdtemp(prefix="pm-demo-"))
    folder.chmod(0o755)
    request.addfinalizer(lambda: shutil.rmtree(folder, ignore_errors=True))
    return folder


def test_demo_finds_the_injected_incidents(tmp_path, request):
    tmp_path = enterable(tmp_path, request)
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
    attacks = re.search(r"Credential attacks injected: (\d+) brute force\(s\), (\d+) password spray\(s\) with one success "
                        r"each; alerts: brute_force (\d+) high \+ (\d+) critical \(password guessed\), password_spray "
                        r"(\d+) high \(about the source\) \+ (\d+) critical", done.stdout)
    assert attacks, done.stdout[-3000:]
    brute, spray, brute_high, brute_critical, spray_high, spray_critical = map(int, attacks.groups())
    # Each injected attack alerts once, and its success once more: nothing from ordinary traffic.
    assert brute >= 1 and brute_high == brute_critical == brute
    assert spray >= 1 and spray_high == spray_critical == spray
    assert re.search(r"\d+ flagged session\(s\) with [1-9]\d* item\(s\) viewed", done.stdout)
    assert (tmp_path / "demo" / "school-day.jsonl").stat().st_size > 0
    # the closing lines say how to look further: the DSN to export and commands that work here
    assert re.search(r"^  export PORTAL_MONITOR_POSTGRES__DSN='postgresql://", done.stdout, re.M)
    assert "portal-monitor alerts list" in done.stdout and "portal-monitor sessions list" in done.stdout
    assert "detectors on: simultaneous_logins" in done.stderr and " off: " not in done.stderr  # all on


def test_demo_over_ten_days_misses_nothing_and_stays_quiet(tmp_path, request):
    """A multi-day run: shared school networks are learnt along the way (impossible travel from
    a school is still caught), ordinary staff who sometimes forget to log out raise nothing, and
    the injected habit raises exactly one `session_left_open`."""
    tmp_path = enterable(tmp_path, request)
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "demo", "--data-dir", str(tmp_path / "demo"),
         "--accounts", "300", "--events", "30000", "--days", "10"],
        capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "PORTAL_MONITOR_HTTP__PORT": "0"},
    )
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    match = re.search(r"Injected incidents for the enabled detectors: (\d+); caught (\d+), missed (\d+); "
                      r"alerts on must-stay-quiet accounts: (\d+)", done.stdout)
    assert match, done.stdout[-3000:]
    expected, caught, missed, false_alarms = map(int, match.groups())
    assert expected >= 8 and caught == expected and missed == 0 and false_alarms == 0, done.stdout[-3000:]
    assert len(re.findall(r"\] session_left_open ", done.stdout)) == 1, done.stdout[-3000:]
    assert len(re.findall(r"\] impossible_travel ", done.stdout)) == 1, done.stdout[-3000:]
