"""The cost of the credential-attack detectors: brute_force in the shard, password_spray in the
network stage fed in process (as `replay` runs it), against both switched off.

    .venv/bin/python -m bench.credentials EVENTS.jsonl [--repeat 5] [--batch 5000]

Each run replays the same records held in memory through `build_shard(...).process()` in
batches and, when on, hands each batch's login outcomes to the stage (`NetworkStage.feed`) like
`Pipeline.through_stage`. Off and on runs alternate; the median and best CPU time
(`time.process_time`) of each are printed, which other load on a shared machine disturbs much
less than wall time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from monitor.service.config import load_settings
from monitor.service.shards import build_network_stage, build_shard

OFF = {"PORTAL_MONITOR_DETECTORS__BRUTE_FORCE__ENABLED": "false", "PORTAL_MONITOR_DETECTORS__PASSWORD_SPRAY__ENABLED": "false"}


def run(lines: list[bytes], batch: int, on: bool) -> tuple[float, int]:
    settings = load_settings(None, environ={} if on else OFF)
    shard = build_shard(settings, 0)
    stage = build_network_stage(settings, 0) if on else None
    records = list(enumerate(lines, 1))
    found = 0
    cpu = time.process_time()
    for start in range(0, len(records), batch):
        findings = shard.process(records[start:start + batch])
        if stage is not None and findings.login_outcomes:
            findings.extend(stage.feed(findings.login_outcomes))
        found += sum(1 for a in findings.alerts if a.detector in ("brute_force", "password_spray"))
    last = shard.drain()
    if stage is not None:
        last.extend(stage.feed(last.login_outcomes))
        last.extend(stage.drain())
    found += sum(1 for a in last.alerts if a.detector in ("brute_force", "password_spray"))
    return time.process_time() - cpu, found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--batch", type=int, default=5000)
    args = parser.parse_args(argv)
    with open(args.events, "rb") as f:
        lines = [line for line in f.read().splitlines() if line.strip()]
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.repeat):
        for on in (False, True):
            seconds, found = run(lines, args.batch, on)
            times[on].append(seconds)
            print(f"{'on ' if on else 'off'} {len(lines) / seconds:>10,.0f} events/CPU-s  credential alerts: {found}", file=sys.stderr)
    for on in (False, True):
        print(f"{'on ' if on else 'off'}: median {len(lines) / statistics.median(times[on]):,.0f} events/CPU-s, "
              f"best {len(lines) / min(times[on]):,.0f}")
    ratio = statistics.median(times[True]) / statistics.median(times[False])
    print(f"on / off CPU time (medians): {ratio:.3f} ({(ratio - 1) * 100:+.1f}%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
