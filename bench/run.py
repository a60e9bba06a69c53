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
                               demo GeoIP databases of the generator's world and its Tor exits as
                               a risky list (bench/locations.py), PostgreSQL sink, default
                               settings otherwise) over the same topic in a fresh group: events/s
                               from its "partitions assigned" log line until every partition's
                               end marker is through: markers an hour of event time after the
                               last event raise one alert per partition, polled for in PostgreSQL
                               every 20 ms (so everything before them was run and delivered). Also
                               reported: the same to the moment the group's committed offsets
                               cover every event, which waits for the daemon's next checkpoint
                               (checkpoint.interval, 5 s by default). ratio = end to end / limit,
                               both from the same run.
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
                               monitor.service.app"` alone: the interpreter and imports.

--smoke runs every scenario tiny and once (well under a minute); the figures are meaningless, it
only shows the harness works (tests/test_bench_smoke.py runs it).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.daemon import py_spy  # noqa: E402
from bench.report import table  # noqa: E402
from bench.scenarios import SCENARIOS, Bench  # noqa: E402


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
    parser.add_argument("--without-locations", action="store_true",
                        help="no demo GeoIP databases or Tor list: the location detectors stay off (for comparison)")
    parser.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                        help="a setting for every daemon, replay and memory run, as in the TOML file (repeatable), "
                        "e.g. --set accounts.registry=false to see what a feature costs")
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
        from monitor.service.config import SourceSettings

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
