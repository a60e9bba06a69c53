"""portal-monitor benchmark: our throughput beside the physical limit of this machine, and the targets.

Starts its own tansu broker (memory storage, free loopback port, as the tests do) and uses the
machine's PostgreSQL (127.0.0.1:5432, else an embedded one), a fresh database per daemon run.
Every figure is the median of --runs runs; each run records the 1-minute load average
(`uptime`) at its start, because a shared machine makes figures noisy. Prints a table and
writes everything as JSON to bench/out/bench-<time>.json (--out to choose).

Traffic: a generated school day (monitor.demo.school_day, as bench/generate.py writes it) for
throughput and replay; paced live traffic with shared logins (bench/live.py) for latency.
docs/performance.md has the current figures and what they mean.

What each figure is:

  kafka bare getmany           an aiokafka consumer in a fresh group reading the whole topic
                               (--events generated events, 4 partitions) with getmany and the
                               daemon's fetch settings; records/s from partition assignment to
                               the last record. The physical limit.
  kafka getmany + decode       the same loop also decoding each record with msgspec into
                               PortalEvent. The limit for anything that looks at the events.
  end to end                   `portal-monitor run` (subprocess, every registered detector on,
                               PostgreSQL sink, default settings otherwise) over the same topic in
                               a fresh group: events/s from its "partitions assigned" log line to
                               the moment the group's committed offsets cover every event
                               (polled every 20 ms). A marker event per partition, an hour of
                               event time later, releases the reorder buffer at the end; it is
                               not counted. ratio = end to end / limit, both from the same run.
  replay                       `portal-monitor replay FILE --summary json` over the same events;
                               the summary's events/s, and its first_event_seconds (replay start,
                               after imports and settings, to the first batch processed).
  latency                      event-to-alert latency at --rate events/s offered (a paced
                               producer, event time = wall clock at send) in live mode: the
                               harness's wall clock when the alert's JSON line arrives through a
                               named pipe written by the daemon's JSONL sink, minus the wall clock
                               when the harness handed the trigger event to the producer. Measured
                               at the default engine.allowed_lateness (2 s: a reorder buffer, each
                               event waits until an event 2 s newer arrived on its partition, so
                               about 2 s by design) and with allowed_lateness = "0s". The in-engine
                               share (the alert's detected_at minus send) is given beside, and the
                               limit: a bare consumer in its own group reading the same topic at
                               the same time (arrival minus the record's Kafka timestamp).
  memory                       one process per size: every account logged in with one live
                               session and --views page views, through a shard with every detector
                               on; peak RSS, and (RSS after - RSS before) / tracked accounts.
  start-up                     `portal-monitor run` against an empty topic and a migrated store:
                               process spawn to the "monitor running" log line (store connected,
                               consumer started, group join requested); the broker's group join
                               ("partitions assigned" after that), reported separately; spawn to
                               the first /readyz 200 (includes the join). Also `python -c "import
                               monitor.app"` alone: the interpreter and imports.

--smoke runs every scenario tiny and once (well under a minute); the figures are meaningless, it
only shows the harness works (tests/test_bench_smoke.py runs it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import broker, live  # noqa: E402
from bench.daemon import Daemon, daemon_environment, py_spy  # noqa: E402
from monitor.demo.school_day import generate, write_jsonl  # noqa: E402
from tests.support.servers import PostgresServer, TansuBroker, free_port  # noqa: E402

PARTITIONS = 4
TOPIC = "portal.events"
MARKER_ACCOUNT = "bench-end-marker"

# Every key the JSON's "figures" carries; tests/test_bench_smoke.py holds its own copy.
FIGURE_KEYS = (
    "kafka_bare_events_per_second",
    "kafka_decode_events_per_second",
    "end_to_end_events_per_second",
    "end_to_end_ratio_to_decode_limit",
    "end_to_end_ratio_to_bare_limit",
    "replay_events_per_second",
    "replay_first_event_seconds",
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


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.figures: dict[str, Any] = {}
        self.work = Path(tempfile.mkdtemp(prefix="pm-bench-"))
        self.broker: TansuBroker | None = None
        self.postgres: PostgresServer | None = None
        self.databases: list[str] = []

    def profile_path(self, name: str) -> str | None:
        """Where py-spy writes this run's profile, with --profile; else None."""
        if not self.args.profile:
            return None
        Path(self.args.profile).mkdir(parents=True, exist_ok=True)
        self._profiles = getattr(self, "_profiles", 0) + 1
        return str(Path(self.args.profile) / f"{name}-{self._profiles}.txt")

    def figure(self, key: str, unit: str) -> Figure:
        return self.figures.setdefault(key, Figure(unit))

    def say(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')} load {load_average():.2f}] {text}", file=sys.stderr, flush=True)

    # -- set-up -------------------------------------------------------------------------------

    def start_servers(self) -> None:
        self.broker = TansuBroker().start()
        self.postgres = PostgresServer()

    def stop_servers(self) -> None:
        if self.broker:
            self.broker.stop()
        if self.postgres:
            for name in self.databases:
                try:
                    asyncio.run(self.postgres.drop_database(name))
                except Exception:  # best effort clean-up
                    pass

    def database(self) -> str:
        assert self.postgres
        name = asyncio.run(self.postgres.create_database())
        self.databases.append(name)
        return self.postgres.dsn_for(name)

    def events(self) -> list[dict]:
        if not hasattr(self, "_events"):
            a = self.args
            self._events = list(generate(a.accounts, a.events, seed=a.seed, days=1, incidents=True))
        return self._events

    def load_topic(self) -> tuple[dict[int, int], int]:
        """The generated events, then one marker per partition; (end offsets, records)."""
        import msgspec

        assert self.broker
        encode = msgspec.json.encode
        events = self.events()
        last = max(e["ts"] for e in events)
        marker_ts = live.rfc3339(live.datetime.fromisoformat(last.replace("Z", "+00:00")).timestamp() + 3600)

        def records():
            for event in events:
                yield event["account_id"].encode(), encode(event), None
            for p in range(PARTITIONS):
                marker = {"event_id": f"bench-end-{p}", "type": "page_view", "ts": marker_ts,
                          "account_id": MARKER_ACCOUNT, "session_id": f"bench-end-{p}", "resource": "/bench/end"}
                yield MARKER_ACCOUNT.encode(), encode(marker), p

        asyncio.run(broker.create_topic(self.broker.bootstrap, TOPIC, PARTITIONS))
        started = time.perf_counter()
        count = asyncio.run(broker.produce(self.broker.bootstrap, TOPIC, records()))
        self.say(f"loaded {count:,} records into {TOPIC} in {time.perf_counter() - started:.1f} s")
        ends = asyncio.run(broker.end_offsets(self.broker.bootstrap, TOPIC, PARTITIONS))
        return ends, count

    # -- scenarios ----------------------------------------------------------------------------

    def throughput(self) -> None:
        """Bare, bare + decode, and the daemon, on the same topic, in each run."""
        assert self.broker
        ends, count = self.load_topic()
        want = {p: offset - 1 for p, offset in ends.items()}  # everything before each marker
        for run in range(self.args.runs):
            load = load_average()
            bare = asyncio.run(broker.bare_consume(self.broker.bootstrap, TOPIC, count, decode=False,
                                                   session_timeout=self.args.session_timeout))
            self.figure("kafka_bare_events_per_second", "events/s").add(bare["events_per_second"], load, **bare)
            load = load_average()
            decoded = asyncio.run(broker.bare_consume(self.broker.bootstrap, TOPIC, count, decode=True,
                                                      session_timeout=self.args.session_timeout))
            self.figure("kafka_decode_events_per_second", "events/s").add(decoded["events_per_second"], load, **decoded)
            load = load_average()
            ours = self.end_to_end(want, count - PARTITIONS)
            self.figure("end_to_end_events_per_second", "events/s").add(ours["events_per_second"], load, **ours)
            self.figure("end_to_end_ratio_to_decode_limit", "ratio").add(
                ours["events_per_second"] / decoded["events_per_second"], load)
            self.figure("end_to_end_ratio_to_bare_limit", "ratio").add(
                ours["events_per_second"] / bare["events_per_second"], load)
            self.say(f"run {run + 1}: bare {bare['events_per_second']:,.0f}/s, decode "
                     f"{decoded['events_per_second']:,.0f}/s, end to end {ours['events_per_second']:,.0f}/s")

    def end_to_end(self, want: dict[int, int], events: int) -> dict[str, Any]:
        assert self.broker
        group = f"bench-e2e-{uuid.uuid4().hex[:8]}"
        port = free_port()
        env = daemon_environment(bootstrap=self.broker.bootstrap, topic=TOPIC, group=group, dsn=self.database(),
                                 http_port=port, session_timeout=self.args.session_timeout)
        daemon = Daemon(env, port, profile=self.profile_path("end-to-end")).start()
        try:
            assigned = daemon.wait_for_log("partitions assigned", timeout=120)
            done = asyncio.run(broker.wait_committed(self.broker.bootstrap, TOPIC, group, want, timeout=600))
        finally:
            code = daemon.stop()
        if code != 0:
            raise RuntimeError(f"daemon exited {code}:\n{daemon.output()[-3000:]}")
        seconds = done - assigned
        return {"events": events, "seconds": seconds, "events_per_second": events / seconds}

    def replay(self) -> None:
        path = self.work / "events.jsonl"
        write_jsonl(path, self.events())
        env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_MONITOR_")}
        for run in range(self.args.runs):
            load = load_average()
            started = time.perf_counter()
            profile = self.profile_path("replay")
            wrap = [py_spy(), "record", "--format", "raw", "--rate", "250", "--output", profile, "--"] if profile else []
            done = subprocess.run(
                [*wrap, sys.executable, "-m", "monitor", "replay", str(path), "--summary", "json", "--alerts-out",
                 os.devnull, "--no-progress", "--dead-letters", str(self.work / "dead.jsonl")],
                capture_output=True, text=True, env=env, timeout=600,
            )
            wall = time.perf_counter() - started
            if done.returncode != 0:
                raise RuntimeError(f"replay failed:\n{done.stderr[-3000:]}")
            summary = json.loads(done.stderr.strip().splitlines()[-1])
            self.figure("replay_events_per_second", "events/s").add(
                summary["events_per_second"], load, process_seconds=round(wall, 3), alerts=summary["alerts"])
            self.figure("replay_first_event_seconds", "s").add(summary["first_event_seconds"], load)
            self.say(f"run {run + 1}: replay {summary['events_per_second']:,}/s, "
                     f"first event after {summary['first_event_seconds']} s")

    def latency(self) -> None:
        for label, lateness in (("default_lateness", None), ("zero_lateness", "0s")):
            for run in range(self.args.runs):
                load = load_average()
                result = self.latency_run(lateness)
                self.figure(f"latency_{label}_p50_ms", "ms").add(result["p50_ms"], load, **result)
                self.figure(f"latency_{label}_p99_ms", "ms").add(result["p99_ms"], load)
                self.figure("latency_bare_consumer_p50_ms", "ms").add(result["bare_consumer_p50_ms"], load)
                self.figure("latency_bare_consumer_p99_ms", "ms").add(result["bare_consumer_p99_ms"], load)
                self.say(f"run {run + 1}: latency ({label}) p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
                         f"{result['alerts']} alerts, offered {result['achieved_rate']:,.0f}/s")

    def latency_run(self, lateness: str | None) -> dict[str, Any]:
        assert self.broker
        topic = f"bench.live.{uuid.uuid4().hex[:8]}"
        asyncio.run(broker.create_topic(self.broker.bootstrap, topic, PARTITIONS))
        pipe = live.AlertPipe(str(self.work / f"alerts-{uuid.uuid4().hex[:8]}.fifo"))
        port = free_port()
        extra = {"PORTAL_MONITOR_SINKS__JSONL__ENABLED": "true", "PORTAL_MONITOR_SINKS__JSONL__PATH": pipe.path}
        if lateness is not None:
            extra["PORTAL_MONITOR_ENGINE__ALLOWED_LATENESS"] = lateness
        extra["PORTAL_MONITOR_SOURCE__FETCH_MAX_WAIT"] = f"{self.args.fetch_max_wait}s"
        env = daemon_environment(bootstrap=self.broker.bootstrap, topic=topic, group=f"bench-live-{topic[-8:]}",
                                 dsn=self.database(), http_port=port, session_timeout=self.args.session_timeout,
                                 extra=extra)
        daemon = Daemon(env, port, profile=self.profile_path(f"live-lateness-{lateness or 'default'}")).start()
        try:
            daemon.wait_ready(timeout=120)
            traffic = live.LiveTraffic(self.args.live_accounts, incident_every=self.args.incident_every)
            tail = 3.0 + (2.0 if lateness is None else 0.0)
            bare = live.BareLatency(self.broker.bootstrap, topic, self.args.fetch_max_wait, self.args.session_timeout)
            sent_at, achieved, total, bare_latencies = asyncio.run(live.produce_paced(
                self.broker.bootstrap, topic, traffic, self.args.rate, self.args.latency_seconds, tail, bare))
            time.sleep(1.0)
        finally:
            code = daemon.stop()
            pipe.close()
        if code != 0:
            raise RuntimeError(f"daemon exited {code}:\n{daemon.output()[-3000:]}")
        to_sink, to_detection = live.latencies(pipe.arrivals, sent_at)

        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1000, 1)

        return {
            "p50_ms": ms(live.percentile(to_sink, 50)),
            "p99_ms": ms(live.percentile(to_sink, 99)),
            "max_ms": ms(max(to_sink) if to_sink else None),
            "detected_p50_ms": ms(live.percentile(to_detection, 50)),
            "detected_p99_ms": ms(live.percentile(to_detection, 99)),
            "bare_consumer_p50_ms": ms(live.percentile(bare_latencies, 50)),
            "bare_consumer_p99_ms": ms(live.percentile(bare_latencies, 99)),
            "fetch_max_wait_ms": round(self.args.fetch_max_wait * 1000),
            "alerts": len(to_sink),
            "alerts_received": len(pipe.arrivals),
            "offered_rate": self.args.rate,
            "achieved_rate": achieved,
            "events_sent": total,
            "allowed_lateness": lateness or "default",
        }

    def memory(self) -> None:
        sizes = {}
        for accounts in self.args.memory_sizes:
            figure = Figure("bytes/account")
            peak = Figure("MiB")
            for run in range(self.args.runs if accounts < 1_000_000 or not self.args.memory_once else 1):
                load = load_average()
                done = subprocess.run(
                    [sys.executable, "-m", "bench.memory", "--accounts", str(accounts), "--views", str(self.args.views)],
                    capture_output=True, text=True, cwd=ROOT, timeout=1800,
                )
                if done.returncode != 0:
                    raise RuntimeError(f"memory run failed:\n{done.stderr[-3000:]}")
                result = json.loads(done.stdout)
                figure.add(result["bytes_per_account"], load, **result)
                peak.add(result["peak_rss_mib"], load)
                self.say(f"run {run + 1}: {accounts:,} accounts: {result['bytes_per_account']} B/account, "
                         f"peak RSS {result['peak_rss_mib']} MiB")
            sizes[str(accounts)] = {"bytes_per_account": figure.as_json(), "peak_rss_mib": peak.as_json()}
        self.figures["memory"] = sizes

    def startup(self) -> None:
        assert self.broker
        topic = f"bench.empty.{uuid.uuid4().hex[:8]}"
        asyncio.run(broker.create_topic(self.broker.bootstrap, topic, PARTITIONS))
        dsn = self.database()
        env_base = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_MONITOR_")}
        for run in range(self.args.runs + 1):  # the first start migrates the fresh store: not counted
            port = free_port()
            env = daemon_environment(bootstrap=self.broker.bootstrap, topic=topic, group=f"bench-start-{uuid.uuid4().hex[:8]}",
                                     dsn=dsn, http_port=port, session_timeout=self.args.session_timeout)
            load = load_average()
            daemon = Daemon(env, port).start()
            try:
                running = daemon.wait_for_log("monitor running", timeout=60)
                ready = daemon.wait_ready(timeout=120)
                assigned = daemon.wait_for_log("partitions assigned", timeout=60)
            finally:
                code = daemon.stop()
            if code != 0:
                raise RuntimeError(f"daemon exited {code}:\n{daemon.output()[-3000:]}")
            if run == 0:
                continue
            self.figure("startup_to_running_seconds", "s").add(running - daemon.spawned, load)
            self.figure("startup_group_join_seconds", "s").add(assigned - running, load)
            self.figure("startup_to_ready_seconds", "s").add(ready - daemon.spawned, load)
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import monitor.app"], check=True, env=env_base)
            self.figure("startup_imports_seconds", "s").add(time.perf_counter() - started, load)
            self.say(f"run {run}: running after {running - daemon.spawned:.2f} s, group join "
                     f"{assigned - running:.2f} s, ready after {ready - daemon.spawned:.2f} s")

    # -- report -------------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        figures: dict[str, Any] = {}
        for key, value in self.figures.items():
            figures[key] = value.as_json() if isinstance(value, Figure) else value
        for key in FIGURE_KEYS:
            figures.setdefault(key, None)
        per_account = [s["bytes_per_account"]["median"] for s in (figures.get("memory") or {}).values()]
        medians = {k: (v or {}).get("median") if k != "memory" else None for k, v in figures.items()}
        medians["memory_max_bytes_per_account"] = per_account[-1] if per_account else None
        targets = []
        for key, op, target, what in TARGETS:
            value = medians.get(key)
            met = None if value is None else (value >= target if op == ">=" else value <= target if op == "<=" else value < target)
            targets.append({"figure": key, "what": what, "target": f"{op} {target}", "value": value, "met": met})
        a = self.args
        return {
            "harness": {
                "smoke": a.smoke, "runs": a.runs, "events": a.events, "accounts": a.accounts, "partitions": PARTITIONS,
                "rate": a.rate, "latency_seconds": a.latency_seconds, "memory_sizes": a.memory_sizes, "views": a.views,
                "seed": a.seed, "session_timeout": a.session_timeout, "fetch_max_wait": a.fetch_max_wait,
                "code": code_version(),
            },
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "uptime_before": self.uptime_before,
                        "uptime_after": uptime(), "note": "shared machine: see load_1m beside each run"},
            "started_at": self.started_at,
            "figures": figures,
            "targets": targets,
        }

    def run(self) -> dict[str, Any]:
        self.started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.uptime_before = uptime()
        self.say(f"uptime: {self.uptime_before}")
        only = set(self.args.only or SCENARIOS)
        needs_servers = only & {"throughput", "latency", "startup"}
        try:
            if needs_servers:
                self.start_servers()
            for name in SCENARIOS:
                if name in only:
                    self.say(f"-- {name}")
                    getattr(self, name)()
        finally:
            self.stop_servers()
        return self.report()


SCENARIOS = ("throughput", "replay", "latency", "memory", "startup")


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
        ("  ratio to the decode limit", fmt(med("end_to_end_ratio_to_decode_limit"), ".2f"), ""),
        ("  ratio to the bare limit", fmt(med("end_to_end_ratio_to_bare_limit"), ".2f"), ""),
        ("replay from file", fmt(med("replay_events_per_second"), ",.0f") + " events/s", loads("replay_events_per_second")),
        ("replay start to first event", fmt(med("replay_first_event_seconds"), ".3f") + " s", ""),
        (f"latency p50 / p99, lateness 2s (default)", f"{fmt(med('latency_default_lateness_p50_ms'), ',.0f')} / {fmt(med('latency_default_lateness_p99_ms'), ',.0f')} ms", loads("latency_default_lateness_p50_ms")),
        ("latency p50 / p99, bare consumer (limit)", f"{fmt(med('latency_bare_consumer_p50_ms'), ',.0f')} / {fmt(med('latency_bare_consumer_p99_ms'), ',.0f')} ms", ""),
        (f"latency p50 / p99, lateness 0s", f"{fmt(med('latency_zero_lateness_p50_ms'), ',.0f')} / {fmt(med('latency_zero_lateness_p99_ms'), ',.0f')} ms", loads("latency_zero_lateness_p50_ms")),
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny, one run, untimed: checks the harness works")
    parser.add_argument("--runs", type=int, help="runs per figure; the median is reported (default 3, smoke 1)")
    parser.add_argument("--events", type=int, help="generated events for throughput and replay (default 200,000)")
    parser.add_argument("--accounts", type=int, help="accounts in the generated traffic (default 20,000)")
    parser.add_argument("--seed", type=int, default=7, help="generator seed (default 7)")
    parser.add_argument("--rate", type=float, help="offered events/s for the latency runs (default 10,000)")
    parser.add_argument("--latency-seconds", type=float, help="measured seconds per latency run (default 20)")
    parser.add_argument("--live-accounts", type=int, help="accounts in the live latency traffic (default 20,000)")
    parser.add_argument("--incident-every", type=int, help="one shared login per this many live events (default 500)")
    parser.add_argument("--fetch-max-wait", type=float, default=None,
                        help="the consumers' fetch max wait in seconds for the latency runs, daemon and bare "
                        "consumer alike (default: the daemon's source.fetch_max_wait)")
    parser.add_argument("--memory-sizes", type=lambda s: [int(x) for x in s.split(",")],
                        help="comma-separated account counts (default 10000,100000,1000000)")
    parser.add_argument("--memory-once", action="store_true", help="run the 1,000,000-account size once, not --runs times")
    parser.add_argument("--views", type=int, default=3, help="page views per session in the memory runs (default 3)")
    parser.add_argument("--session-timeout", type=float, default=3.0,
                        help="consumer group session timeout in seconds; tansu's join takes about half (default 3)")
    parser.add_argument("--only", action="append", choices=SCENARIOS, help="run only this scenario (repeatable)")
    parser.add_argument("--profile", metavar="DIR",
                        help="also sample the daemon (end to end, latency; idle samples included) and replay with "
                        "py-spy (pip install py-spy); raw profiles go to DIR, summarise with "
                        "bench/profile_summary.py. Sampling costs a few percent: profiled figures are not for "
                        "the table")
    parser.add_argument("--out", help="JSON output file (default bench/out/bench-<time>.json)")
    args = parser.parse_args(argv)
    if args.profile and shutil.which(py_spy()) is None:
        parser.error("--profile needs py-spy: pip install py-spy")
    smoke = args.smoke
    defaults = dict(runs=1 if smoke else 3, events=2_000 if smoke else 200_000, accounts=400 if smoke else 20_000,
                    rate=1_000 if smoke else 10_000, latency_seconds=2 if smoke else 20,
                    live_accounts=500 if smoke else 20_000, incident_every=100 if smoke else 500,
                    memory_sizes=[1_000, 2_000, 3_000] if smoke else [10_000, 100_000, 1_000_000])
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.fetch_max_wait is None:
        from monitor.config import SourceSettings

        args.fetch_max_wait = float(SourceSettings().fetch_max_wait)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = Bench(args).run()
    out = Path(args.out) if args.out else ROOT / "bench" / "out" / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(table(result))
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
