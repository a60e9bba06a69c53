"""The benchmark's report: which figures there are, the issue's targets, and the table.

Every figure is a `Figure`: one value per run with the 1-minute load average at the start of
that run (the machine is shared), and the median of the runs.
"""

from __future__ import annotations

import os
import statistics
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# Every key the JSON's "figures" carries; tests/test_bench_smoke.py holds its own copy.
FIGURE_KEYS = (
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
    "memory",
    "startup_to_running_seconds",
    "startup_group_join_seconds",
    "startup_to_ready_seconds",
    "startup_imports_seconds",
)

TARGETS = (  # (figure, comparison, target, what)
    ("end_to_end_ratio_to_decode_limit", ">=", 0.5, "end to end / bare consumer with decode"),
    ("replay_events_per_second", ">=", 150_000, "replay from file, events/s"),
    ("latency_zero_lateness_p99_ms", "<=", 250, "p99 event-to-alert at 10k/s, allowed_lateness 0s (ms)"),
    ("latency_default_lateness_p99_ms", "<=", 250, "p99 event-to-alert at 10k/s, allowed_lateness 2s (ms)"),
    ("memory_max_bytes_per_account", "<=", 1024, "bytes per tracked account (largest size)"),
    ("startup_to_running_seconds", "<", 2.0, "process start to running (s)"),
    ("replay_first_event_seconds", "<", 1.0, "replay start to first event (s)"),
)


def code_version() -> str:
    """The commit measured, with "+dirty" when the worktree has uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=ROOT, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if head.returncode == 0 else "unknown"


def load_average() -> float:
    return os.getloadavg()[0]


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


class Figure:
    """One figure: a value per run, with the load average at the start of that run."""

    def __init__(self, unit: str) -> None:
        self.unit = unit
        self.runs: list[dict[str, Any]] = []

    def add(self, value: float | None, load: float, **detail: Any) -> None:
        self.runs.append({"value": value, "load_1m": round(load, 2), **detail})

    def median(self) -> float | None:
        values = [r["value"] for r in self.runs if r["value"] is not None]
        return statistics.median(values) if values else None

    def as_json(self) -> dict[str, Any]:
        return {"median": self.median(), "unit": self.unit, "runs": self.runs}


def assess(figures: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with the measured median and whether it was met (None: not measured)."""
    per_account = [s["bytes_per_account"]["median"] for s in (figures.get("memory") or {}).values()]
    medians = {k: (v or {}).get("median") if k != "memory" else None for k, v in figures.items()}
    medians["memory_max_bytes_per_account"] = per_account[-1] if per_account else None
    targets = []
    for key, op, target, what in TARGETS:
        value = medians.get(key)
        met = None if value is None else (value >= target if op == ">=" else value <= target if op == "<=" else value < target)
        targets.append({"figure": key, "what": what, "target": f"{op} {target}", "value": value, "met": met})
    return targets


def table(result: dict[str, Any]) -> str:
    f = result["figures"]

    def med(key: str) -> Any:
        return (f.get(key) or {}).get("median")

    def loads(key: str) -> str:
        runs = (f.get(key) or {}).get("runs") or []
        return ", ".join(f"{r['load_1m']:.1f}" for r in runs)

    def fmt(value: Any, spec: str) -> str:
        return "n/a" if value is None else format(value, spec)

    rows = [
        ("kafka bare getmany (limit)", fmt(med("kafka_bare_events_per_second"), ",.0f") + " events/s", loads("kafka_bare_events_per_second")),
        ("kafka getmany + msgspec decode (limit)", fmt(med("kafka_decode_events_per_second"), ",.0f") + " events/s", loads("kafka_decode_events_per_second")),
        ("end to end, all detectors, PostgreSQL", fmt(med("end_to_end_events_per_second"), ",.0f") + " events/s", loads("end_to_end_events_per_second")),
        ("  counted to all committed (checkpoints)", fmt(med("end_to_end_committed_events_per_second"), ",.0f") + " events/s", ""),
        ("  ratio to the decode limit", fmt(med("end_to_end_ratio_to_decode_limit"), ".2f"), ""),
        ("  ratio to the bare limit", fmt(med("end_to_end_ratio_to_bare_limit"), ".2f"), ""),
        ("replay from file", fmt(med("replay_events_per_second"), ",.0f") + " events/s", loads("replay_events_per_second")),
        ("  per CPU-second of the replay process", fmt(med("replay_events_per_cpu_second"), ",.0f") + " events/CPU-s", ""),
        ("replay start to first event", fmt(med("replay_first_event_seconds"), ".3f") + " s", ""),
        ("latency p50 / p99, lateness 2s (default)", f"{fmt(med('latency_default_lateness_p50_ms'), ',.0f')} / {fmt(med('latency_default_lateness_p99_ms'), ',.0f')} ms", loads("latency_default_lateness_p50_ms")),
        ("latency p50 / p99, bare consumer (limit)", f"{fmt(med('latency_bare_consumer_p50_ms'), ',.0f')} / {fmt(med('latency_bare_consumer_p99_ms'), ',.0f')} ms", ""),
        ("latency p50 / p99, lateness 0s", f"{fmt(med('latency_zero_lateness_p50_ms'), ',.0f')} / {fmt(med('latency_zero_lateness_p99_ms'), ',.0f')} ms", loads("latency_zero_lateness_p50_ms")),
    ]
    for size, m in (f.get("memory") or {}).items():
        rows.append((f"memory, {int(size):,} accounts", f"{fmt(m['bytes_per_account']['median'], ',.0f')} B/account, peak RSS {fmt(m['peak_rss_mib']['median'], ',.0f')} MiB",
                     ", ".join(f"{r['load_1m']:.1f}" for r in m["bytes_per_account"]["runs"])))
    rows += [
        ("start-up: process to running", fmt(med("startup_to_running_seconds"), ".2f") + " s", loads("startup_to_running_seconds")),
        ("  of which interpreter + imports", fmt(med("startup_imports_seconds"), ".2f") + " s", ""),
        ("  broker group join (not ours)", fmt(med("startup_group_join_seconds"), ".2f") + " s", ""),
        ("  process to /readyz 200", fmt(med("startup_to_ready_seconds"), ".2f") + " s", ""),
    ]
    width = max(len(r[0]) for r in rows)
    value_width = max(len(r[1]) for r in rows)
    h = result["harness"]
    lines = [f"portal-monitor bench ({h['code']}): {h['events']:,} events, {h['accounts']:,} accounts, {h['partitions']} partitions, "
             f"median of {h['runs']} run(s){' (SMOKE: figures meaningless)' if h['smoke'] else ''}",
             f"machine: {result['machine']['cpus']} CPUs; before: {result['machine']['uptime_before']}",
             "", f"{'figure'.ljust(width)}  {'median'.ljust(value_width)}  load (1 min) per run"]
    lines += [f"{name.ljust(width)}  {value.ljust(value_width)}  {load}" for name, value, load in rows]
    lines.append("\ntargets:")
    for t in result["targets"]:
        mark = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
        value = t["value"]
        shown = "n/a" if value is None else (f"{value:,.3g}" if isinstance(value, float) else f"{value:,}")
        lines.append(f"  {t['what']}: {t['target']} -> {shown} ({mark})")
    return "\n".join(lines)
