"""The engine alone, no I/O: events/s of `Shard.process` over a JSON-lines file held in memory.

    python -m bench.engine EVENTS.jsonl [--repeat 3] [--batch 5000] [--without ID ...] [--decode-only]

What replay would do without reading the file and writing alerts: the quickest way to see
what a change to decode, the reorder buffer, the session table or a detector costs. Besides
wall-clock events/s it prints events per CPU-second of this process, which other load on a
shared machine disturbs much less.
"""

from __future__ import annotations

import argparse
import os
import sys
import statistics
import time

from detectors.registry import detector_ids
from monitor.service.config import load_settings
from monitor.service.shards import build_shard


def run(lines: list[bytes], batch: int, without: frozenset[str] = frozenset(), decode_only: bool = False) -> tuple[float, float, int]:
    env = {k: v for k, v in os.environ.items() if k.startswith("PORTAL_MONITOR_")}  # e.g. bench/locations.py's
    env.update({f"PORTAL_MONITOR_DETECTORS__{d.upper()}__ENABLED": str(d not in without).lower() for d in detector_ids()})
    shard = build_shard(load_settings(None, environ=env), 0)
    records = list(enumerate(lines, 1))
    alerts = 0
    started, cpu = time.perf_counter(), time.process_time()
    if decode_only:  # the shard's own decoder (msgspec and the contract's checks), nothing else
        decode = shard.decoder.decode
        for line in lines:
            decode(line)
        return time.perf_counter() - started, time.process_time() - cpu, 0
    for i in range(0, len(records), batch):
        alerts += len(shard.process(records[i : i + batch]).alerts)
    alerts += len(shard.drain().alerts)
    return time.perf_counter() - started, time.process_time() - cpu, alerts


def main() -> None:
    from monitor.support.logging import configure_logging

    configure_logging("warning", "json", stream=sys.stderr)  # stdout carries the result
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("events", help="portal.event/v1 JSON lines")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the median is printed (default 3)")
    parser.add_argument("--batch", type=int, default=5000, help="records per batch (default 5000)")
    parser.add_argument("--without", action="append", default=[], metavar="ID",
                        help="switch this detector off (repeatable; 'all' for every one): what it costs")
    parser.add_argument("--decode-only", action="store_true",
                        help="only decode each line with the shard's decoder (msgspec and the contract's checks)")
    args = parser.parse_args()
    known = set(detector_ids())
    without = set(known if "all" in args.without else args.without)
    if without - known:
        parser.error(f"--without: no detector {', '.join(sorted(without - known))} (known: {', '.join(sorted(known))})")
    with open(args.events, "rb") as source:
        lines = [line for line in source if line.strip()]
    rates, cpu_rates = [], []
    for _ in range(args.repeat):
        seconds, cpu, alerts = run(lines, args.batch, frozenset(without), args.decode_only)
        rates.append(len(lines) / seconds)
        cpu_rates.append(len(lines) / cpu)
    print(f"{len(lines):,} events, {alerts} alerts: median {statistics.median(rates):,.0f} events/s wall, "
          f"{statistics.median(cpu_rates):,.0f} events/CPU-s, best {max(cpu_rates):,.0f} events/CPU-s (wall runs: {', '.join(f'{r:,.0f}' for r in rates)})")


if __name__ == "__main__":
    main()
