"""Replay throughput with GeoIP enrichment and the location detectors off, then on.

    .venv/bin/python bench/geo_overhead.py [--events 200000] [--accounts 5000] [--repeat 3]

Events come from `monitor.demo.school_day.generate(accounts, events, seed=...)` when that
module exists, otherwise from the simple school-day generator below: each account logs in
from its home network (or the school's NAT), views pages, sometimes moves to a mobile network
mid-session, and logs out. "off" has no [geoip], and impossible_travel, new_country,
risky_network and shared-network learning switched off (simultaneous_logins only); "on" adds
demo City/ASN/Anonymous-IP databases written with mmdb-writer (from monitor.demo.world when present), a Tor exit list, the three
location detectors and shared-network learning, all at their defaults; "no db" is the default
settings without [geoip] (location detectors idle, shared learning and risky_network on). Each run
replays the same pre-encoded records through `build_shard(...).process()` in batches of 5000;
off and on runs alternate and the best CPU time (`time.process_time`) of each is kept, so other
load on the machine skews the figures less.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import structlog  # noqa: E402

from monitor.service.config import load_settings  # noqa: E402
from monitor.places.geo import GeoServices  # noqa: E402
from monitor.places.geoip_demo import SAMPLE_NETWORKS, write_databases  # noqa: E402
from monitor.service.shards import build_shard  # noqa: E402

BATCH = 5000
HOMES = ("81.2.69.{}", "86.150.{}.{}", "82.33.{}.{}", "2a02:c7f:{:x}:{:x}::10", "90.1.{}.{}", "83.44.{}.{}")
MOBILE = "31.94.{}.{}"
SCHOOL_NAT = "194.72.10.5"
RESOURCES = [f"/pupils/{n}/{part}" for n in range(4000, 4100) for part in ("attendance", "behaviour", "report")]


def home_ip(rng: random.Random, abroad: bool = True) -> str:
    pattern = rng.choices(HOMES, weights=(30, 25, 25, 10, 5 * abroad, 5 * abroad))[0]
    return pattern.format(*(rng.randrange(1, 250) for _ in range(pattern.count("{}") + pattern.count("{:x}"))))


def simple_school_day(accounts: int, events: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    staff = {f"acct-{n:05d}" for n in range(accounts) if rng.random() < 0.3}
    homes = {f"acct-{n:05d}": home_ip(rng, abroad=f"acct-{n:05d}" not in staff) for n in range(accounts)}
    out: list[dict] = []
    clock = datetime(2026, 3, 2, 7, 0, tzinfo=timezone.utc)
    session = 0
    while len(out) < events:
        account = rng.choice(list(homes))
        session += 1
        sid = f"s{session}"
        ip = SCHOOL_NAT if account in staff and rng.random() < 0.6 else homes[account]
        clock += timedelta(seconds=rng.uniform(0.5, 3))
        at = clock
        out.append({"type": "login_succeeded", "account_id": account, "session_id": sid, "ip": ip, "at": at})
        for _ in range(rng.randrange(5, 25)):
            at += timedelta(seconds=rng.uniform(5, 60))
            if rng.random() < 0.02:
                ip = MOBILE.format(rng.randrange(1, 250), rng.randrange(1, 250))
            out.append({"type": "page_view", "account_id": account, "session_id": sid, "ip": ip, "at": at,
                        "resource": rng.choice(RESOURCES)})
        out.append({"type": "logout", "account_id": account, "session_id": sid, "at": at + timedelta(seconds=5)})
    out = out[:events]
    out.sort(key=lambda e: e["at"])
    for n, event in enumerate(out):
        event["event_id"] = f"e{n}"
        event["ts"] = event.pop("at").strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return out


def records(accounts: int, events: int, seed: int) -> tuple[str, list[bytes]]:
    try:
        from monitor.demo.school_day import generate  # type: ignore[import-not-found]

        source, generated = "monitor.demo.school_day", list(generate(accounts, events, seed=seed))
    except ImportError:
        source, generated = "bench/geo_overhead.py simple_school_day", simple_school_day(accounts, events, seed)
    lines = [e if isinstance(e, bytes) else (e.encode() if isinstance(e, str) else json.dumps(e, default=str).encode()) for e in generated]
    return source, lines


def replay(settings, lines: list[bytes]) -> tuple[float, int]:
    """CPU seconds to replay `lines` through a fresh shard, and the alerts it raised."""
    geo = GeoServices.from_settings(settings)
    shard = build_shard(settings, 0, geo=geo)
    batches = [list(enumerate(lines[i : i + BATCH], i)) for i in range(0, len(lines), BATCH)]
    gc.collect()
    started = time.process_time()
    found = 0
    for batch in batches:
        found += len(shard.process(batch).alerts)
    found += len(shard.drain().alerts)
    return time.process_time() - started, found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--accounts", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    source, lines = records(args.accounts, args.events, args.seed)
    with tempfile.TemporaryDirectory() as folder, structlog.testing.capture_logs():
        tor = Path(folder) / "tor-exits.txt"
        try:  # the world the school-day generator draws its addresses from
            from monitor.demo.world import NETWORKS, networks_of_kind

            paths = write_databases(NETWORKS, folder)
            tor.write_text("".join(f"{n.cidr}\n" for n in networks_of_kind("tor_exit")))
        except ImportError:
            paths = write_databases(SAMPLE_NETWORKS, folder)
            tor.write_text("".join(f"185.220.101.{n}\n" for n in range(1, 200)))
        off = load_settings(
            None,
            environ={
                "PORTAL_MONITOR_DETECTORS__IMPOSSIBLE_TRAVEL__ENABLED": "false",
                "PORTAL_MONITOR_DETECTORS__NEW_COUNTRY__ENABLED": "false",
                "PORTAL_MONITOR_DETECTORS__RISKY_NETWORK__ENABLED": "false",
                "PORTAL_MONITOR_NETWORKS__SHARED__ENABLED": "false",
            },
        )
        on_environ = {f"PORTAL_MONITOR_GEOIP__{key.upper()}": path for key, path in paths.items()}
        on_environ["PORTAL_MONITOR_NETWORKS__RISKY"] = f'[{{name = "tor-exits", kind = "tor", file = "{tor}"}}]'
        on = load_settings(None, environ=on_environ)
        no_db = load_settings(None, environ={})
        runs = {"off": off, "no-db": no_db, "on": on}
        best = {name: float("inf") for name in runs}
        alerts: dict[str, int] = {}
        ratios = []
        for _ in range(args.repeat):  # alternate, so load from elsewhere hits all alike
            seconds = {}
            for name, settings in runs.items():
                seconds[name], alerts[name] = replay(settings, lines)
                best[name] = min(best[name], seconds[name])
            ratios.append(seconds["off"] / seconds["on"])
        rate = {name: len(lines) / best[name] for name in runs}
        ratios.sort()
    print(f"events: {len(lines):,} from {source} ({args.accounts:,} accounts), best of {args.repeat}, CPU time")
    print(f"geo off: {rate['off']:>10,.0f} events/s  ({alerts['off']} alerts)  no location features at all")
    print(f"no db:   {rate['no-db']:>10,.0f} events/s  ({alerts['no-db']} alerts)  default settings, no [geoip]")
    print(f"geo on:  {rate['on']:>10,.0f} events/s  ({alerts['on']} alerts)  demo City/ASN/Anonymous-IP, Tor list")
    print(
        f"on/off:  {rate['on'] / rate['off']:.3f} best-to-best, {ratios[len(ratios) // 2]:.3f} median of paired runs "
        f"(overhead {100 * (1 - rate['on'] / rate['off']):.1f}%); on/no-db {rate['on'] / rate['no-db']:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
