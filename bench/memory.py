"""Memory per tracked account: one process per size, state built through the real engine.

    python -m bench.memory --accounts 1000000

Every account logs in (one live session, from its home broadband in the demo world, so with
GeoIP databases configured the session is located) and views `--views` pupil
records; the records go through a shard built from the default settings with every detector
on, in batches of 5,000 as in replay. Printed as JSON: resident memory before (interpreter,
imports, the shard) and after (everything drained and collected), peak RSS (VmHWM), and
(after - before) / tracked accounts. The redelivery window (the last `engine.dedup_window`
event ids) is part of "after": it is bounded, so its share per account falls as accounts grow.
"""

from __future__ import annotations

import argparse
import os
import sys
import gc
import json
import time
import tracemalloc
from typing import Iterator

from detectors.registry import detector_ids
from monitor.service.config import load_settings
from monitor.service.shards import build_shard

BASE = 1772438400  # 2026-03-02T08:00:00Z


def rss_kib(field: str = "VmRSS") -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def home_ip(index: int) -> str:
    """The account's home address, in one of the demo world's home broadband networks (so the
    demo GeoIP databases of bench/locations.py place it and the session gets location state)."""
    from monitor.demo.world import ip_at, networks_of_kind

    homes = networks_of_kind("home_broadband")
    return ip_at(homes[index % len(homes)], index // len(homes))


def records(accounts: int, views: int, batch: int = 5000) -> Iterator[list[tuple[int, bytes]]]:
    """login + `views` page views per account, interleaved, event time rising within 20 minutes."""
    out: list[tuple[int, bytes]] = []
    offset = 0
    span = 1200.0
    per_round = max(1, accounts)
    for round_ in range(views + 1):
        for i in range(accounts):
            at = BASE + span * (round_ * per_round + i) / ((views + 1) * per_round)
            seconds = int(at)
            ts = f"2026-03-02T{8 + (seconds - BASE) // 3600:02d}:{(seconds // 60) % 60:02d}:{seconds % 60:02d}.{int((at % 1) * 1000):03d}Z"
            account = f"acct-{i:07d}"
            ip = home_ip(i)
            if round_ == 0:
                line = (f'{{"event_id":"m-{offset}","type":"login_succeeded","ts":"{ts}","account_id":"{account}",'
                        f'"session_id":"s-{i}","ip":"{ip}","portal":"parent","user_agent":"Mozilla/5.0 (bench)"}}')
            else:
                line = (f'{{"event_id":"m-{offset}","type":"page_view","ts":"{ts}","account_id":"{account}",'
                        f'"session_id":"s-{i}","ip":"{ip}","portal":"parent",'
                        f'"resource":"/pupils/{1000 + (i * 7 + round_) % 90000}/attendance"}}')
            out.append((offset, line.encode()))
            offset += 1
            if len(out) >= batch:
                yield out
                out = []
    if out:
        yield out


def measure(accounts: int, views: int, trace: int = 0) -> dict:
    env = {k: v for k, v in os.environ.items() if k.startswith("PORTAL_MONITOR_")}  # e.g. bench/locations.py's
    env.update({f"PORTAL_MONITOR_DETECTORS__{d.upper()}__ENABLED": "true" for d in detector_ids()})
    settings = load_settings(None, environ=env)
    shard = build_shard(settings, 0)
    gc.collect()
    if trace:
        tracemalloc.start()
    before = rss_kib()
    started = time.perf_counter()
    events = 0
    for batch in records(accounts, views):
        shard.process(batch)
        events += len(batch)
    shard.drain()
    seconds = time.perf_counter() - started
    gc.collect()
    after = rss_kib()
    tracked = len(shard.sessions.accounts)
    if trace:
        report_allocations(tracemalloc.take_snapshot(), tracked, trace)
    return {
        "accounts": accounts,
        "tracked_accounts": tracked,
        "open_sessions": shard.sessions.open_sessions,
        "events": events,
        "views_per_session": views,
        "rss_before_mib": round(before / 1024, 1),
        "rss_after_mib": round(after / 1024, 1),
        "peak_rss_mib": round(rss_kib("VmHWM") / 1024, 1),
        "bytes_per_account": round((after - before) * 1024 / max(tracked, 1)),
        "seconds": round(seconds, 3),
    }


def report_allocations(snapshot: "tracemalloc.Snapshot", tracked: int, top: int) -> None:
    """The `top` source lines holding the most memory still allocated, per tracked account (stderr)."""
    stats = snapshot.statistics("lineno")
    total = sum(stat.size for stat in stats)
    print(f"tracemalloc: {total / max(tracked, 1):.0f} B/account allocated since the shard was built", file=sys.stderr)
    for stat in stats[:top]:
        frame = stat.traceback[0]
        print(f"{stat.size / max(tracked, 1):8.1f} B/account {stat.count:>9,} blocks  {frame.filename}:{frame.lineno}", file=sys.stderr)


def main() -> None:
    from monitor.support.logging import configure_logging

    configure_logging("warning", "json", stream=sys.stderr)  # stdout carries the result
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, required=True, help="accounts to track")
    parser.add_argument("--views", type=int, default=3, help="pupil records viewed per session (default 3)")
    parser.add_argument("--trace", type=int, default=0, metavar="N",
                        help="also trace allocations (slow) and print the N source lines holding most to stderr")
    args = parser.parse_args()
    print(json.dumps(measure(args.accounts, args.views, args.trace)))


if __name__ == "__main__":
    main()
