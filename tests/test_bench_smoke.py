"""The benchmark harness works: `bench/run.py --smoke` runs every scenario and its JSON is complete.

Not a performance test: the smoke figures are tiny and untimed. It checks that every scenario
ran against the real broker, daemon and PostgreSQL, and produced every figure with a value.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent

# The harness's own list is bench.report.FIGURE_KEYS; this copy makes dropping a figure a failure.
FIGURES = (
    "kafka_bare_events_per_second",
    "kafka_decode_events_per_second",
    "end_to_end_events_per_second",
    "end_to_end_committed_events_per_second",
    "end_to_end_ratio_to_decode_limit",
    "end_to_end_ratio_to_bare_limit",
    "replay_events_per_second",
    "replay_first_event_seconds",
    "replay_events_per_cpu_second",
    "latency_default_lateness_p50_ms",
    "latency_default_lateness_p99_ms",
    "latency_zero_lateness_p50_ms",
    "latency_zero_lateness_p99_ms",
    "latency_bare_consumer_p50_ms",
    "latency_bare_consumer_p99_ms",
    "startup_to_running_seconds",
    "startup_group_join_seconds",
    "startup_to_ready_seconds",
    "startup_imports_seconds",
)


def test_smoke_run_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "targets:" in done.stdout and str(out) in done.stdout

    result = json.loads(out.read_text())
    assert result["harness"]["smoke"] is True
    assert result["machine"]["uptime_before"]
    figures = result["figures"]
    for key in FIGURES:
        figure = figures[key]
        assert figure is not None, f"{key} was not measured"
        assert figure["median"] is not None and figure["median"] >= 0, (key, figure)
        assert figure["runs"] and all("load_1m" in run for run in figure["runs"]), key

    assert figures["end_to_end_events_per_second"]["runs"][0]["events"] > 0
    assert figures["latency_zero_lateness_p50_ms"]["runs"][0]["alerts"] > 0  # alerts did arrive and match
    memory = figures["memory"]
    assert len(memory) == 3
    for size in memory.values():
        assert size["bytes_per_account"]["median"] > 0
        assert size["peak_rss_mib"]["median"] > 0

    targets = {t["figure"]: t for t in result["targets"]}
    assert set(targets) >= {"end_to_end_ratio_to_decode_limit", "replay_events_per_second",
                            "latency_zero_lateness_p99_ms", "memory_max_bytes_per_account",
                            "startup_to_running_seconds", "replay_first_event_seconds"}
    assert all(t["met"] is not None for t in targets.values())
