"""What the pupil-record features cost: throughput on vs off, and bytes per account.

    python -m bench.pupils throughput EVENTS.jsonl [--runs 9] [--batch 5000] [--gc replay|default]
    python -m bench.pupils paired EVENTS.jsonl [--rounds 5] [--batch 5000]
    python -m bench.pupils replay EVENTS.jsonl [--runs 7]
    python -m bench.pupils memory [--accounts 1000000]
    python -m bench.pupils store EVENTS.jsonl --dsn DSN [--rows 10000000]
    python -m bench.pupils instructions EVENTS.jsonl [--events 2000] [--gc replay|default] [--side both|on|off]

`throughput` runs the engine (as `bench/engine.py`: decode, reorder buffer, session table,
detectors; no file reading) and the access store's share of the work in this process (each
batch's views of pupils' records turned into the columns `PostgresSink` sends; PostgreSQL folds
them into rows in its own process, as the broker's work is in its own) over the same events with `unlinked_pupil_access`
and `bulk_record_access` and the access log ([pupils] access_log) on, then all three off, alternating, each run in a
fresh process (`once`), and prints the fastest and the median events per CPU-second of each and
their ratios. CPU seconds of the engine's loop are what other load on a shared machine disturbs
least, yet a run here moves by 10-20%: other load only ever slows a run down, so the fastest of
several runs (as `timeit` reports) is the figure least disturbed; the median is given beside it. `--gc replay` (the default) tunes the garbage
collector as `portal-monitor replay` and `run` do (`monitor.service.runtime`: a young collection
every 50,000 allocations, start-up objects frozen); `--gc default` keeps CPython's defaults
(every 700), which charge each new long-lived object (a window, an access-log entry) several
collections.

`paired` times the same two sides in one process, batch by batch in turn (which side goes
first swaps every batch), and prints each round's ratio and their median: the load of other
tenants, which moves over seconds, then falls on both sides alike. It spreads by about 3%
where `throughput`'s separate runs spread by 20%; both sides' state shares the caches, which
costs each side a little.

`replay` runs `portal-monitor replay EVENTS.jsonl` itself (subprocesses, alternating) with both
detectors on, then off, and compares the events/s its closing summary reports: the replay
throughput an operator sees, reading and writing included. Replay keeps no access log (it has
no store); the access log's share in the monitor's process is in `throughput` and `paired`.

`instructions` counts the same on vs off with callgrind (valgrind), which the machine's load
does not move: the engine over the first N events and over the whole file, and prints the
marginal instructions per event, (I(all) - I(N)) / (all - N), of each and their ratio: the
day's average, start-up and imports left out. (Before 2026-12-03 it counted the first N and 2N
events: the morning only, where pupil views are fewer; that gave 1.125 where the whole day gives 1.16.)

`memory` measures, with tracemalloc, the state the two detectors keep per account after a
school day's pattern: parents with two linked children who open them a few times, teachers who
open their class of 30, all windows closed (the baseline every account keeps) and, separately,
the open windows (only accounts active in the last hour have one).

`store` (a scratch PostgreSQL database: it drops and fills `pupil_access` there) runs the
events through a shard with the access log on and writes each batch with the PostgreSQL sink,
then reports rows and bytes (table plus indexes) per million pupil views and the write time;
then fills `pupil_access` to `--rows` rows with `generate_series` (100,000 pupils with
`--rows`/100,000 rows each over 400 days, 40,000 accounts) and times `pupils access` for random pupils over 90 days.
"""

from __future__ import annotations

import argparse
import os
from datetime import datetime, timedelta, timezone
import statistics
import sys
import time
import tracemalloc

from detectors.registry import detector_ids
from monitor.service.config import load_settings
from monitor.service.shards import build_shard

PUPIL_DETECTORS = ("unlinked_pupil_access", "bulk_record_access")


def _settings(on: bool):
    env = {k: v for k, v in os.environ.items() if k.startswith("PORTAL_MONITOR_")}
    env.update({f"PORTAL_MONITOR_DETECTORS__{d.upper()}__ENABLED": "true" for d in detector_ids()})
    env["PORTAL_MONITOR_PUPILS__ACCESS_LOG"] = "true" if on else "false"
    if not on:
        env.update({f"PORTAL_MONITOR_DETECTORS__{d.upper()}__ENABLED": "false" for d in PUPIL_DETECTORS})
    return load_settings(None, environ=env)


def _run(lines: list[bytes], batch: int, on: bool) -> tuple[float, int]:
    from sinks.postgres import pupil_access_columns

    shard = build_shard(_settings(on), 0)
    records = list(enumerate(lines, 1))
    alerts = 0
    cpu = time.process_time()
    for i in range(0, len(records), batch):
        findings = shard.process(records[i : i + batch])
        alerts += len(findings.alerts)
        # The access store's share in this process: the batch's views as the UPSERT's columns
        # (what PostgresSink.write sends; PostgreSQL's fold is in its own process).
        pupil_access_columns(findings.pupil_access)
    findings = shard.drain()
    alerts += len(findings.alerts)
    pupil_access_columns(findings.pupil_access)
    return time.process_time() - cpu, alerts


def _tune(gc_mode: str) -> None:
    if gc_mode == "replay":
        from monitor.service.runtime import tune_garbage_collector

        tune_garbage_collector()


def throughput(path: str, runs: int, batch: int, gc_mode: str = "replay") -> None:
    import re
    import subprocess

    rates: dict[bool, list[float]] = {True: [], False: []}
    alerts: dict[bool, int] = {}
    events = 0
    for run in range(runs):
        for on in (True, False):  # alternating, each in a fresh process: neither side inherits the other's heap
            command = [sys.executable, "-m", "bench.pupils", "once", path, "--batch", str(batch), "--gc", gc_mode,
                       "--on" if on else "--off"]
            done = subprocess.run(command, capture_output=True, text=True)
            found = re.search(r"alerts (\d+) cpu ([\d.]+) events (\d+)", done.stdout)
            if done.returncode != 0 or not found:
                sys.exit(f"throughput: run {run + 1} ({'on' if on else 'off'}) failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
            alerts[on], events = int(found.group(1)), int(found.group(3))
            rates[on].append(events / float(found.group(2)))
            print(f"run {run + 1}/{runs} {'on ' if on else 'off'}: {rates[on][-1]:,.0f} events per CPU-second", file=sys.stderr)
    print(f"events: {events:,}; runs: {runs} per side, alternating, a fresh process each; batch: {batch}; garbage collector: {gc_mode}")
    for on in (True, False):
        listed = ", ".join(f"{r:,.0f}" for r in rates[on])
        print(f"{'on ' if on else 'off'}: fastest {max(rates[on]):,.0f}, median {statistics.median(rates[on]):,.0f} events per CPU-second (runs {listed}); alerts {alerts[on]}")
    fastest = max(rates[True]) / max(rates[False])
    median = statistics.median(rates[True]) / statistics.median(rates[False])
    print(f"on / off: fastest {fastest:.3f} ({(1 - fastest) * 100:.1f}% slower), median {median:.3f} ({(1 - median) * 100:.1f}% slower)")


def paired(path: str, rounds: int, batch: int, gc_mode: str = "replay") -> None:
    from sinks.postgres import pupil_access_columns

    with open(path, "rb") as source:
        lines = [line for line in source if line.strip()]
    records = list(enumerate(lines, 1))
    _tune(gc_mode)
    ratios = []
    for round_ in range(rounds):
        shards = {True: build_shard(_settings(True), 0), False: build_shard(_settings(False), 0)}
        cpu = {True: 0.0, False: 0.0}
        order = (True, False)
        for i in range(0, len(records), batch):
            for on in order:
                started = time.process_time()
                findings = shards[on].process(records[i : i + batch])
                pupil_access_columns(findings.pupil_access)
                cpu[on] += time.process_time() - started
            order = order[::-1]
        for on in order:
            started = time.process_time()
            pupil_access_columns(shards[on].drain().pupil_access)
            cpu[on] += time.process_time() - started
        ratios.append(cpu[False] / cpu[True])
        print(f"round {round_ + 1}/{rounds}: on {len(lines) / cpu[True]:,.0f}, off {len(lines) / cpu[False]:,.0f} "
              f"events per CPU-second; on / off {ratios[-1]:.3f}", flush=True)
    median = statistics.median(ratios)
    print(f"events: {len(lines):,}; rounds: {rounds}; batch: {batch}; garbage collector: {gc_mode}")
    print(f"on / off, paired: median {median:.3f} ({(1 - median) * 100:.1f}% slower), "
          f"rounds {', '.join(f'{r:.3f}' for r in ratios)}")


def replay_runs(path: str, runs: int) -> None:
    import json
    import subprocess
    import tempfile

    rates: dict[bool, list[float]] = {True: [], False: []}
    alerts: dict[bool, int] = {}
    with tempfile.TemporaryDirectory(prefix="pm-pupils-replay-") as folder:
        for run in range(runs):
            for on in (True, False):
                env = {**os.environ}
                for detector in PUPIL_DETECTORS:
                    env[f"PORTAL_MONITOR_DETECTORS__{detector.upper()}__ENABLED"] = "true" if on else "false"
                command = [sys.executable, "-m", "monitor", "replay", path, "--no-progress", "--summary", "json",
                           "--alerts-out", f"{folder}/alerts.jsonl", "--dead-letters", f"{folder}/dead.jsonl"]
                done = subprocess.run(command, env=env, capture_output=True, text=True)
                if done.returncode != 0:
                    sys.exit(f"replay: run {run + 1} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
                summary = json.loads(done.stderr.strip().splitlines()[-1])
                rates[on].append(float(summary["events_per_second"]))
                alerts[on] = sum(summary["alerts"].values())
                print(f"run {run + 1}/{runs} {'on ' if on else 'off'}: {rates[on][-1]:,.0f} events/s", file=sys.stderr)
    print(f"portal-monitor replay {path}: runs {runs} per side, alternating (the summary's events/s)")
    for on in (True, False):
        print(f"{'on ' if on else 'off'}: median {statistics.median(rates[on]):,.0f}, fastest {max(rates[on]):,.0f} events/s "
              f"(runs {', '.join(f'{r:,.0f}' for r in rates[on])}); alerts {alerts[on]}")
    median = statistics.median(rates[True]) / statistics.median(rates[False])
    print(f"on / off: median {median:.3f} ({(1 - median) * 100:.1f}% slower), fastest {max(rates[True]) / max(rates[False]):.3f}")


def once(path: str, batch: int, on: bool, gc_mode: str = "replay") -> None:
    """One run of the engine over the file (what `instructions` counts and `throughput` times)."""
    with open(path, "rb") as source:
        lines = [line for line in source if line.strip()]
    _tune(gc_mode)
    cpu, alerts = _run(lines, batch, on)
    print(f"alerts {alerts} cpu {cpu:.6f} events {len(lines)}")


def instructions(path: str, events: int, batch: int, gc_mode: str = "replay", side: str = "both") -> None:
    import re
    import subprocess
    import tempfile
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    folder = Path(tempfile.mkdtemp(prefix="pm-pupils-callgrind-"))
    with open(path, "rb") as source:
        lines = [line for line in source if line.strip()]
    whole = len(lines)
    if whole < 2 * events:
        sys.exit(f"instructions: {path} has {whole:,} events, fewer than 2 x {events:,}")
    files = {n: folder / f"{n}.jsonl" for n in (events, whole)}
    for n, file in files.items():
        file.write_bytes(b"".join(lines[:n]))
    env = {**os.environ, "PYTHONHASHSEED": "0"}

    def count(job: tuple[int, bool]) -> int:
        n, on = job
        out = folder / f"{n}-{on}.out"
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-m", "bench.pupils",
                   "once", str(files[n]), "--batch", str(batch), "--gc", gc_mode, "--on" if on else "--off"]
        done = subprocess.run(command, env=env, capture_output=True)
        found = re.search(rb"Collected\s*:\s*(\d+)", done.stderr)
        if done.returncode != 0 or not found:
            sys.exit(f"callgrind failed (exit {done.returncode}):\n{done.stderr.decode(errors='replace')[-2000:]}")
        return int(found.group(1))

    sides = {"both": (True, False), "on": (True,), "off": (False,)}[side]
    jobs = [(n, on) for on in sides for n in files]
    with ThreadPoolExecutor(2) as pool:
        counted = dict(zip(jobs, pool.map(count, jobs)))
    per_event = {on: (counted[(whole, on)] - counted[(events, on)]) / (whole - events) for on in sides}
    print(f"events {events:,} to {whole:,} of {path} (the whole file but its first {events:,}); garbage collector: {gc_mode}")
    if True in per_event:
        print(f"on : {per_event[True]:,.0f} instructions per event (marginal)")
    if False in per_event:
        print(f"off: {per_event[False]:,.0f} instructions per event (marginal)")
    if len(per_event) == 2:
        print(f"on / off: {per_event[True] / per_event[False]:.3f}")
    for file in folder.iterdir():
        file.unlink()
    folder.rmdir()


def memory(accounts: int) -> None:
    from detectors.base import DetectorContext
    from detectors.bulk_record_access import BulkRecordAccess
    from detectors.unlinked_pupil_access import UnlinkedPupilAccess
    from monitor.contract.events import PortalEvent
    from monitor.places.networks import NetworkMap
    from monitor.state.sessions import SessionTable

    settings = load_settings(None, environ={})
    networks = NetworkMap([])
    context = DetectorContext(SessionTable(networks, idle_timeout=1800, max_duration=43200, max_items=50), networks)
    staff = accounts // 5
    from datetime import datetime, timezone

    day = datetime(2026, 3, 2, tzinfo=timezone.utc)

    def view(account: str, portal: str, role: str, pupil: str, at: float) -> PortalEvent:
        event = PortalEvent(event_id="e", type="page_view", ts=day, account_id=account, session_id="s", portal=portal,  # type: ignore[arg-type]
                            role=role, resource=f"/pupils/{pupil}", pupil_id=pupil, action="view")
        event.at = at
        return event

    def link(account: str, pupil: str) -> PortalEvent:
        event = PortalEvent(event_id="l", type="pupil_linked", ts=day, account_id=account, pupil_id=pupil)
        event.at = 0.0
        return event

    results = {}
    for name in PUPIL_DETECTORS:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        if name == "unlinked_pupil_access":
            detector = UnlinkedPupilAccess(settings.detectors.unlinked_pupil_access, context)
            for n in range(accounts - staff):
                account = f"parent-{n:07d}"
                for child in range(2):
                    detector.on_event(link(account, str(1_000_000 + 2 * n + child)), None)  # type: ignore[arg-type]
            open_bytes = None
        else:
            detector = BulkRecordAccess(settings.detectors.bulk_record_access, context)
            for n in range(accounts):
                if n < staff:
                    account, portal, role, pupils = f"staff-{n:07d}", "schools", "teacher", [str(2_000_000 + (n % 500) * 30 + i) for i in range(30)]
                else:
                    account, portal, role, pupils = f"parent-{n:07d}", "parent", "parent", [str(1_000_000 + 2 * n), str(1_000_000 + 2 * n + 1)]
                for i, pupil in enumerate(pupils):
                    detector.on_event(view(account, portal, role, pupil, 8 * 3600 + n * 0.01 + i * 0.001), None)  # type: ignore[arg-type]
            with_windows = tracemalloc.get_traced_memory()[0] - before
            detector.on_tick(10 ** 9)  # every window closed: what stays per account
            open_bytes = with_windows
        held = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        results[name] = (held, open_bytes, detector)
    print(f"accounts: {accounts:,} ({staff:,} teachers with a class of 30, {accounts - staff:,} parents of two)")
    held, _, _ = results["unlinked_pupil_access"]
    print(f"unlinked_pupil_access links (2 per parent): {held / (accounts - staff):,.0f} B per parent, {held / accounts:,.0f} B per account")
    held, open_bytes, _ = results["bulk_record_access"]
    print(f"bulk_record_access baselines, windows closed: {held / accounts:,.0f} B per account")
    print(f"bulk_record_access with every account's window open: {open_bytes / accounts:,.0f} B per account")


async def store_bench(path: str, dsn: str, rows: int, queries: int) -> None:
    import random

    import asyncpg

    from monitor import store
    from monitor.response import queries as responder
    from sinks.postgres import PostgresSink

    with open(path, "rb") as source:
        lines = [line for line in source if line.strip()]
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        await store.migrate(pool)
        await pool.execute("TRUNCATE pupil_access")
        shard = build_shard(_settings(True), 0)
        sink = PostgresSink(pool)
        records = list(enumerate(lines, 1))
        views = write_seconds = 0.0
        for i in range(0, len(records), 5000):
            findings = shard.process(records[i : i + 5000])
            views += len(findings.pupil_access)
            started = time.perf_counter()
            await sink.write(findings)
            write_seconds += time.perf_counter() - started
        findings = shard.drain()
        views += len(findings.pupil_access)
        await sink.write(findings)
        await pool.execute("VACUUM ANALYZE pupil_access")
        count = await pool.fetchval("SELECT count(*) FROM pupil_access")
        size = await pool.fetchval("SELECT pg_total_relation_size('pupil_access')")
        per_million = 1_000_000 / views
        print(f"pupil views: {views:,.0f} of {len(lines):,} events; rows: {count:,}; table + indexes: {size:,} bytes")
        print(f"per million pupil views: {count * per_million:,.0f} rows, {size * per_million / 1e6:,.1f} MB "
              f"({size / count:,.0f} B per row); sink write time {write_seconds * per_million:,.1f} s per million views")

        await pool.execute("TRUNCATE pupil_access")
        started = time.perf_counter()
        await pool.execute(
            """INSERT INTO pupil_access (pupil_id, day, account_id, views, downloads, prints, exports, first_at, last_at, addresses)
               SELECT (1000000 + g % 100000)::text,
                      date '2026-01-01' - ((g / 100000) * 4 + g % 4)::int % 400,
                      'account-' || ((g % 100000) * 31 + (g / 100000) * 7) % 40000,
                      1 + g % 5, g % 3 / 2, 0, g % 11 / 10,
                      (date '2026-01-01' - ((g / 100000) * 4 + g % 4)::int % 400) + time '08:00' + (g % 600) * interval '1 minute',
                      (date '2026-01-01' - ((g / 100000) * 4 + g % 4)::int % 400) + time '09:00' + (g % 600) * interval '1 minute',
                      ARRAY[('81.2.' || (g % 250) || '.' || (g % 200))::inet]
               FROM generate_series(1, $1::bigint) AS g
               ON CONFLICT DO NOTHING""",
            rows,
        )
        await pool.execute("VACUUM ANALYZE pupil_access")
        filled = await pool.fetchval("SELECT count(*) FROM pupil_access")
        size = await pool.fetchval("SELECT pg_total_relation_size('pupil_access')")
        print(f"filled {filled:,} rows in {time.perf_counter() - started:.0f} s ({size:,} bytes)")
        since = datetime(2026, 1, 1, tzinfo=timezone.utc) - timedelta(days=90)
        rng = random.Random(15)
        times = []
        found = 0
        for _ in range(queries):
            pupil = str(1_000_000 + rng.randrange(100_000))
            started = time.perf_counter()
            answer = await responder.pupil_access(pool, pupil, since=since)
            times.append(time.perf_counter() - started)
            found += len(answer["accounts"])
        times.sort()
        print(f"pupils access over 90 days, {queries} random pupils among {filled:,} rows: "
              f"median {times[len(times) // 2] * 1000:.1f} ms, p95 {times[int(len(times) * 0.95)] * 1000:.1f} ms, "
              f"max {times[-1] * 1000:.1f} ms; {found / queries:.1f} accounts per pupil")
    finally:
        await pool.close()


def _engine_options(command: argparse.ArgumentParser) -> None:
    """The options of every subcommand that runs the engine over the file."""
    command.add_argument("--batch", type=int, default=5000, help="events per batch (default 5000)")
    command.add_argument("--gc", choices=("replay", "default"), default="replay",
                         help="replay: tuned as `portal-monitor replay` (default); default: CPython's")


def main() -> None:
    from monitor.support.logging import configure_logging

    configure_logging("warning", "json", stream=sys.stderr)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("throughput", help="engine events per CPU-second, pupil detectors on vs off")
    run.add_argument("events")
    run.add_argument("--runs", type=int, default=9, help="runs per side (default 9)")
    _engine_options(run)
    pair = commands.add_parser("paired", help="engine events per CPU-second, on vs off in one process, batch by batch")
    pair.add_argument("events")
    pair.add_argument("--rounds", type=int, default=5, help="rounds over the whole file (default 5)")
    _engine_options(pair)
    rep_ = commands.add_parser("replay", help="`portal-monitor replay` events/s, both detectors on vs off")
    rep_.add_argument("events")
    rep_.add_argument("--runs", type=int, default=7, help="runs per side (default 7)")
    mem = commands.add_parser("memory", help="bytes per account of the pupil detectors' state")
    mem.add_argument("--accounts", type=int, default=1_000_000)
    st = commands.add_parser("store", help="pupil_access rows and bytes per million views; query time among N rows")
    st.add_argument("events")
    st.add_argument("--dsn", required=True, help="a scratch database (pupil_access there is emptied)")
    st.add_argument("--rows", type=int, default=10_000_000)
    st.add_argument("--queries", type=int, default=200)
    ins = commands.add_parser("instructions", help="callgrind: marginal instructions per event, on vs off")
    ins.add_argument("events")
    ins.add_argument("--events", dest="count", type=int, default=2_000,
                     help="N: the events left out at the start, as the baseline run (default 2000)")
    ins.add_argument("--side", choices=("both", "on", "off"), default="both",
                     help="count one side only (half the time), e.g. `on` when a change touches the pupil path only")
    _engine_options(ins)
    one = commands.add_parser("once", help="one run of the engine (what `instructions` counts)")
    one.add_argument("events")
    _engine_options(one)
    one.add_argument("--on", dest="on", action="store_true", default=True)
    one.add_argument("--off", dest="on", action="store_false")
    args = parser.parse_args()
    if args.command == "instructions":
        instructions(args.events, args.count, args.batch, args.gc, args.side)
    elif args.command == "once":
        once(args.events, args.batch, args.on, args.gc)
    elif args.command == "throughput":
        throughput(args.events, args.runs, args.batch, args.gc)
    elif args.command == "paired":
        paired(args.events, args.rounds, args.batch, args.gc)
    elif args.command == "replay":
        replay_runs(args.events, args.runs)
    elif args.command == "store":
        import asyncio

        asyncio.run(store_bench(args.events, args.dsn, args.rows, args.queries))
    else:
        memory(args.accounts)


if __name__ == "__main__":
    main()
