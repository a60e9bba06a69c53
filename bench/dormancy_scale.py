"""Dormancy at scale: import a roster of N accounts (default 1,000,000) and sweep it.

    .venv/bin/python bench/dormancy_scale.py [--accounts 1000000] [--admin-dsn postgresql://postgres@127.0.0.1:5432/postgres]

Creates a throwaway database on the server, writes a synthetic roster CSV, and measures:
1. `portal-monitor accounts import` as a subprocess: wall time and the child's peak RSS;
   the same import again (idempotent: nothing changes);
2. the sweep of a shard at a watermark where a share of the accounts crossed the 180-day line
   (a fresh roster into a running monitor: the backlog), chunk by chunk, with the marks
   written back, as the pipeline does it; then a steady-state sweep a minute later; then the
   same over 16 partitions (each shard sweeps its own key-hash share);
3. the dormant-accounts gauge query; the table's size on disk; this process's peak RSS.
Prints one JSON object with the figures (and a readable summary on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from detectors.dormant_account import DormantAccountSettings  # noqa: E402
from detectors.dormant_account_login import DormantAccountLoginSettings  # noqa: E402
from monitor import store  # noqa: E402
from monitor.accounts.lifecycle import AccountLifecycle  # noqa: E402
from monitor.accounts.postgres import PostgresRegistry  # noqa: E402
from monitor.service.config import PostgresSettings  # noqa: E402
from monitor.engine.shard import ShardClock  # noqa: E402

DAY = 86400.0


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_roster(path: Path, count: int, now: float, seed: int = 7) -> dict:
    """A roster like a county's: staff and parents; 70% used in the last 180 days, 20% longer ago, 10% never."""
    rng = random.Random(seed)
    shape = {"never_logged_in": 0, "last_login_over_180_days_ago": 0, "revoked": 0, "disabled": 0}
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["account_id", "portal", "role", "created_at", "last_login_at", "status"])
        for n in range(count):
            parent = rng.random() < 0.3
            created = now - rng.uniform(30, 3 * 365) * DAY
            kind = rng.random()
            if kind < 0.10:
                last_login = ""
                shape["never_logged_in"] += 1
            elif kind < 0.30:
                last_login = iso(max(created, now - rng.uniform(180, 900) * DAY))
                shape["last_login_over_180_days_ago"] += 1
            else:
                last_login = iso(max(created, now - rng.uniform(0, 180) * DAY))
            r = rng.random()
            status = "revoked" if r < 0.001 else "disabled" if r < 0.002 else "active"
            if status != "active":
                shape[status] += 1
            out.writerow([
                f"{'parent' if parent else 'staff'}-{n:07d}", "parent" if parent else "schools",
                "parent" if parent else rng.choice(("teacher", "head", "office", "senco")),
                iso(created), last_login, status,
            ])
    return shape


def run_import(roster: Path, dsn: str) -> dict:
    env = dict(os.environ, PORTAL_MONITOR_POSTGRES__DSN=dsn)
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "monitor", "accounts", "import", str(roster), "--format", "json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    stdout, stderr = child.communicate()
    elapsed = time.perf_counter() - started
    if child.returncode != 0:
        raise SystemExit(f"import failed: {stderr.decode()[-2000:]}")
    report = json.loads(stdout)
    return {"seconds": round(elapsed, 2), "report": {k: report[k] for k in ("rows_read", "new", "updated", "unchanged", "rejected")}}


async def sweep_backlog(registry: PostgresRegistry, watermark: float, partitions: int, limit: int) -> dict:
    """Sweep as the pipeline does: chunks of alerts, each followed by writing its marks."""
    lifecycle = AccountLifecycle(registry, DormantAccountSettings(sweep_limit=limit), DormantAccountLoginSettings())
    lifecycle.partitions = partitions
    shards = [ShardClock(p, watermark) for p in range(partitions)]
    lifecycle._starts = {p: watermark for p in range(partitions)}  # noqa: SLF001 - a stream just begun
    chunks = []
    alerts = warnings = 0
    started = time.perf_counter()
    while True:
        t = time.perf_counter()
        found = await lifecycle.sweep(shards)
        swept = time.perf_counter() - t
        if found is None:
            break
        t = time.perf_counter()
        await lifecycle.record(found)
        marked = time.perf_counter() - t
        alerts += len(found.alerts)
        warnings += sum(1 for a in found.alerts if a.severity == "low")
        chunks.append((swept, marked, len(found.alerts)))
    total = time.perf_counter() - started
    return {
        "seconds": round(total, 2),
        "alerts": alerts,
        "warnings": warnings,
        "chunks": len(chunks),
        "query_and_build_seconds_per_chunk": round(sum(c[0] for c in chunks) / max(len(chunks), 1), 3),
        "mark_seconds_per_chunk": round(sum(c[1] for c in chunks) / max(len(chunks), 1), 3),
        "lifecycle": lifecycle,
    }


async def steady_sweep(lifecycle: AccountLifecycle, watermark: float, partitions: int) -> dict:
    shards = [ShardClock(p, watermark) for p in range(partitions)]
    t = time.perf_counter()
    found = await lifecycle.sweep(shards)
    elapsed = time.perf_counter() - t
    if found is not None:
        await lifecycle.record(found)
    return {"seconds": round(elapsed, 4), "per_shard_ms": round(1000 * elapsed / partitions, 2),
            "alerts": len(found.alerts) if found else 0}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--admin-dsn", default=os.environ.get("PORTAL_MONITOR_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--keep", action="store_true", help="keep the database and the CSV")
    parser.add_argument("--sweep-limit", type=int, default=DormantAccountSettings().sweep_limit,
                        help="accounts per sweep query (detectors.dormant_account.sweep_limit)")
    args = parser.parse_args()

    now = float(int(time.time()))
    workdir = Path(tempfile.mkdtemp(prefix="pm-dormancy-"))
    roster = workdir / "roster.csv"
    t = time.perf_counter()
    shape = write_roster(roster, args.accounts, now)
    generated = time.perf_counter() - t
    name = f"pm_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(args.admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = args.admin_dsn.rpartition("/")
    dsn = f"{base}/{name}"
    results: dict = {"accounts": args.accounts, "sweep_limit": args.sweep_limit, "roster_mb": round(roster.stat().st_size / 1e6, 1),
                     "roster_shape": shape, "generate_seconds": round(generated, 1)}
    try:
        results["import"] = run_import(roster, dsn)
        results["import_child_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
        results["reimport"] = run_import(roster, dsn)

        pool = await store.connect(PostgresSettings(dsn=dsn, pool_min=1, pool_max=2))
        registry = PostgresRegistry(pool)
        async with pool.acquire() as conn:
            await conn.execute("ANALYZE accounts")
            results["table_mb"] = round(await conn.fetchval("SELECT pg_total_relation_size('accounts')") / 1e6, 1)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        backlog = await sweep_backlog(registry, now, 1, args.sweep_limit)
        lifecycle = backlog.pop("lifecycle")
        results["sweep_backlog_1_shard"] = backlog
        results["sweep_steady_1_shard"] = await steady_sweep(lifecycle, now + 60, 1)
        results["sweep_steady_1_shard_a_day_later"] = await steady_sweep(lifecycle, now + DAY, 1)
        lifecycle16 = AccountLifecycle(registry, DormantAccountSettings(), DormantAccountLoginSettings())
        lifecycle16.partitions = 16
        lifecycle16._starts = {p: now for p in range(16)}  # noqa: SLF001
        await steady_sweep(lifecycle16, now + DAY, 16)  # first sweep of these shards
        results["sweep_steady_16_shards"] = await steady_sweep(lifecycle16, now + DAY + 60, 16)
        t = time.perf_counter()
        results["dormant_accounts"] = await registry.count("dormant")
        results["dormant_gauge_query_seconds"] = round(time.perf_counter() - t, 3)
        results["sweep_process_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        results["sweep_process_rss_before_sweep_mb"] = round(rss_before, 1)
        await pool.close()
    finally:
        if not args.keep:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            roster.unlink(missing_ok=True)
            workdir.rmdir()
        await admin.close()
    print(json.dumps(results, indent=2))
    i, b = results["import"], results["sweep_backlog_1_shard"]
    print(
        f"\n{args.accounts:,} accounts: import {i['seconds']} s (child peak RSS {results['import_child_peak_rss_mb']} MB), "
        f"re-import {results['reimport']['seconds']} s; backlog sweep {b['alerts']:,} alerts in {b['seconds']} s "
        f"({b['chunks']} chunks); steady sweep {results['sweep_steady_1_shard']['seconds'] * 1000:.1f} ms; "
        f"16 shards {results['sweep_steady_16_shards']['per_shard_ms']} ms each; "
        f"sweeping process peak RSS {results['sweep_process_peak_rss_mb']} MB",
        file=sys.stderr,
    )


if __name__ == "__main__":
    asyncio.run(main())
