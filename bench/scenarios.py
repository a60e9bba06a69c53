"""The benchmark's scenarios: each runs --runs times and adds its figures to the report.

`Bench` owns the servers (its own tansu broker, a fresh PostgreSQL database per daemon run)
and the generated traffic; `bench/run.py` documents what each figure measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench import broker, live
from bench.daemon import Daemon, daemon_environment, py_spy
from bench.locations import location_environment
from bench.report import FIGURE_KEYS, ROOT, Figure, assess, code_version, load_average, uptime
from detectors.registry import detector_ids
from monitor.demo.school_day import generate, write_jsonl
from tests.support.servers import PostgresServer, TansuBroker, free_port

def settings_environment(assignments: list[str]) -> dict[str, str]:
    """`section.key=value` (as in the TOML file) as PORTAL_MONITOR_SECTION__KEY variables."""
    env = {}
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"bench/run.py: --set wants section.key=value, not {assignment!r}")
        env["PORTAL_MONITOR_" + "__".join(part.upper() for part in key.strip().split("."))] = value
    return env


PARTITIONS = 4
TOPIC = "portal.events"
MARKER_ACCOUNT = "bench-end-marker"
MARKERS = 3  # end-marker events per partition (see Bench.load_topic)


async def wait_for_alerts(dsn: str, accounts_like: str, count: int, timeout: float, poll: float = 0.02) -> float:
    """perf_counter once `count` accounts matching `accounts_like` have an alert in PostgreSQL."""
    import asyncpg

    deadline = time.perf_counter() + timeout
    conn = None
    try:
        while True:
            now = time.perf_counter()
            if now > deadline:
                raise TimeoutError(f"no alerts for {count} accounts like {accounts_like!r} after {timeout} s")
            try:
                if conn is None:
                    conn = await asyncpg.connect(dsn)
                found = await conn.fetchval(
                    "SELECT count(DISTINCT account_id) FROM alerts WHERE account_id LIKE $1", accounts_like)
                if found >= count:
                    return time.perf_counter()
            except (asyncpg.UndefinedTableError, OSError, asyncpg.PostgresError):
                pass  # the daemon has not migrated the store yet
            await asyncio.sleep(poll)
    finally:
        if conn is not None:
            await conn.close()
SCENARIOS = ("throughput", "replay", "latency", "memory", "startup")


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.figures: dict[str, Any] = {}
        self.work = Path(tempfile.mkdtemp(prefix="pm-bench-"))
        self.broker: TansuBroker | None = None
        self.postgres: PostgresServer | None = None
        self.databases: list[str] = []
        # demo GeoIP databases and a Tor list, so the location detectors run too
        self.locations = {} if args.without_locations else location_environment(self.work / "geoip")
        self.locations.update(settings_environment(args.set or []))  # --set: for every run alike

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
        """The generated events, then the end markers of each partition; (end offsets, records).

        The markers, an hour of event time after the last event, on an account of their own per
        partition: a login, a second login a second later from another network (a
        `simultaneous_logins` alert: the harness sees the partition's events through when that
        alert is in PostgreSQL) and a page view a minute later, which moves the watermark past
        both logins (it stays in the reorder buffer: everything before it can be committed).
        """
        import msgspec

        assert self.broker
        encode = msgspec.json.encode
        events = self.events()
        last = max(e["ts"] for e in events)
        end = live.datetime.fromisoformat(last.replace("Z", "+00:00")).timestamp() + 3600

        def records():
            for event in events:
                yield event["account_id"].encode(), encode(event), None
            for p in range(PARTITIONS):
                account = f"{MARKER_ACCOUNT}-{p}"
                common = {"account_id": account, "portal": "schools"}
                markers = (
                    {"type": "login_succeeded", "ts": live.rfc3339(end), "session_id": f"{account}-a", "ip": f"198.51.100.{10 + p}"},
                    {"type": "login_succeeded", "ts": live.rfc3339(end + 1), "session_id": f"{account}-b", "ip": f"203.0.113.{10 + p}"},
                    {"type": "page_view", "ts": live.rfc3339(end + 60), "session_id": f"{account}-b", "ip": f"203.0.113.{10 + p}",
                     "resource": "/bench/end"},
                )
                for n, marker in enumerate(markers):
                    yield account.encode(), encode({"event_id": f"{account}-{n}", **common, **marker}), p

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
        want = {p: offset - 1 for p, offset in ends.items()}  # everything before each last marker
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
            ours = self.end_to_end(want, count - MARKERS * PARTITIONS)
            self.figure("end_to_end_events_per_second", "events/s").add(ours["events_per_second"], load, **ours)
            self.figure("end_to_end_committed_events_per_second", "events/s").add(ours["committed_events_per_second"], load)
            self.figure("end_to_end_ratio_to_decode_limit", "ratio").add(
                ours["events_per_second"] / decoded["events_per_second"], load)
            self.figure("end_to_end_ratio_to_bare_limit", "ratio").add(
                ours["events_per_second"] / bare["events_per_second"], load)
            self.say(f"run {run + 1}: bare {bare['events_per_second']:,.0f}/s, decode "
                     f"{decoded['events_per_second']:,.0f}/s, end to end {ours['events_per_second']:,.0f}/s "
                     f"({ours['committed_events_per_second']:,.0f}/s to committed)")

    def end_to_end(self, want: dict[int, int], events: int) -> dict[str, Any]:
        assert self.broker
        group = f"bench-e2e-{uuid.uuid4().hex[:8]}"
        port = free_port()
        dsn = self.database()
        env = daemon_environment(bootstrap=self.broker.bootstrap, topic=TOPIC, group=group, dsn=dsn,
                                 http_port=port, session_timeout=self.args.session_timeout, extra=self.locations)
        daemon = Daemon(env, port, profile=self.profile_path("end-to-end")).start()
        try:
            assigned = daemon.wait_for_log("partitions assigned", timeout=120)
            delivered = asyncio.run(wait_for_alerts(dsn, f"{MARKER_ACCOUNT}-%", PARTITIONS, timeout=600))
            committed = asyncio.run(broker.wait_committed(self.broker.bootstrap, TOPIC, group, want, timeout=600))
        finally:
            code = daemon.stop()
        if code != 0:
            raise RuntimeError(f"daemon exited {code}:\n{daemon.output()[-3000:]}")
        seconds = delivered - assigned
        return {"events": events, "seconds": seconds, "events_per_second": events / seconds,
                "committed_seconds": committed - assigned, "committed_events_per_second": events / (committed - assigned)}

    def replay(self) -> None:
        path = self.work / "events.jsonl"
        write_jsonl(path, self.events())
        env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_MONITOR_")}
        env.update(self.locations)
        env.update({f"PORTAL_MONITOR_DETECTORS__{d.upper()}__ENABLED": "true" for d in detector_ids()})
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
            cpu = summary.get("cpu_seconds")
            self.figure("replay_events_per_cpu_second", "events/CPU-s").add(
                summary["events"] / cpu if cpu else None, load)
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
        extra = {**self.locations, "PORTAL_MONITOR_SINKS__JSONL__ENABLED": "true", "PORTAL_MONITOR_SINKS__JSONL__PATH": pipe.path}
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
                env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_MONITOR_")}
                done = subprocess.run(
                    [sys.executable, "-m", "bench.memory", "--accounts", str(accounts), "--views", str(self.args.views)],
                    capture_output=True, text=True, cwd=ROOT, timeout=1800, env={**env, **self.locations},
                )
                if done.returncode != 0:
                    raise RuntimeError(f"memory run failed:\n{done.stderr[-3000:]}")
                result = json.loads(done.stdout.strip().splitlines()[-1])
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
                                     dsn=dsn, http_port=port, session_timeout=self.args.session_timeout, extra=self.locations)
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
            subprocess.run([sys.executable, "-c", "import monitor.service.app"], check=True, env=env_base)
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
        a = self.args
        return {
            "harness": {
                "smoke": a.smoke, "runs": a.runs, "events": a.events, "accounts": a.accounts, "partitions": PARTITIONS,
                "rate": a.rate, "latency_seconds": a.latency_seconds, "memory_sizes": a.memory_sizes, "views": a.views,
                "seed": a.seed, "session_timeout": a.session_timeout, "fetch_max_wait": a.fetch_max_wait,
                "code": self.code, "settings": sorted(self.locations), "set": a.set or [],
            },
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "uptime_before": self.uptime_before,
                        "uptime_after": uptime(), "note": "shared machine: see load_1m beside each run"},
            "started_at": self.started_at,
            "figures": figures,
            "targets": assess(figures),
        }

    def run(self) -> dict[str, Any]:
        self.started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.code = code_version()  # before the run: edits made while it runs are not what it measured
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
