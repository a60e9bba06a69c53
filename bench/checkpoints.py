"""Checkpoint cost at scale: full snapshot vs delta, and restore, for one partition in PostgreSQL.

    python -m bench.checkpoints --accounts 2000000 --change 0.01

Builds one shard's state as `bench.memory` does (every account logs in from its home broadband
and views `--views` pupil records; every detector on, with the demo GeoIP databases of
`bench.locations`, so the location detectors hold state), then writes, through the daemon's
`CheckpointStore` into a fresh database of the PostgreSQL at 127.0.0.1:5432
(`PORTAL_MONITOR_TEST_POSTGRES` to point elsewhere):

1. a full checkpoint (what every checkpoint cost before deltas): bytes, seconds to take it
   (encode) and seconds for the whole save (encode + one transaction);
2. `--change` of the accounts then log in again (a new session each) and a delta is written:
   the same figures;
3. a new owner's restore: load the chain (full + delta) and apply it to a fresh shard.

Printed as JSON: wall seconds, and CPU seconds of this process (`*_cpu_seconds`), which other
load on a shared machine disturbs much less; `save` includes taking the checkpoint (encode).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

from bench.locations import location_environment
from bench.memory import BASE, home_ip, records
from detectors.registry import detector_ids
from monitor import store
from monitor.service.checkpoints import CheckpointSettings, CheckpointStore
from monitor.service.config import load_settings
from monitor.service.shards import build_shard

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support.servers import PostgresServer  # noqa: E402


def settings_for(folder: Path):
    env = {k: v for k, v in os.environ.items() if k.startswith("PORTAL_MONITOR_")}
    env.update(location_environment(folder))
    env.update({f"PORTAL_MONITOR_DETECTORS__{d.upper()}__ENABLED": "true" for d in detector_ids()})
    return load_settings(None, environ=env)


def second_logins(accounts: int, share: float, first_offset: int) -> list[tuple[int, bytes]]:
    """A login in a new session for every 1/share-th account, 25 minutes after the first round."""
    step = max(1, round(1 / share))
    out = []
    for n, i in enumerate(range(0, accounts, step)):
        at = BASE + 1500 + n * 0.001
        seconds = int(at)
        ts = f"2026-03-02T08:{(seconds - BASE) // 60:02d}:{seconds % 60:02d}.{n % 1000:03d}Z"
        line = (f'{{"event_id":"c-{n}","type":"login_succeeded","ts":"{ts}","account_id":"acct-{i:07d}",'
                f'"session_id":"c-{i}","ip":"{home_ip(i)}","portal":"parent","user_agent":"Mozilla/5.0 (bench)"}}')
        out.append((first_offset + n, line.encode()))
    return out


async def measure(accounts: int, views: int, change: float, server: PostgresServer) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="pm-bench-cp-"))
    settings = settings_for(folder)
    shard = build_shard(settings, 0)
    geo = shard.geo  # the process's: a new owner's shard shares it
    started = time.perf_counter()
    offset = 0
    for batch in records(accounts, views):
        shard.process(batch)
        offset = batch[-1][0] + 1
    build_seconds = time.perf_counter() - started
    database = await server.create_database()
    pool = await asyncpg.create_pool(server.dsn_for(database), min_size=1, max_size=2)
    result: dict = {"accounts": accounts, "views_per_session": views, "changed_share": change,
                    "tracked_accounts": len(shard.sessions.accounts), "build_seconds": round(build_seconds, 1)}
    try:
        await store.migrate(pool)
        saver = CheckpointStore(pool, "bench", "portal.events", CheckpointSettings())

        gc.collect()
        started, cpu = time.perf_counter(), time.process_time()
        encoded = len(shard.checkpoint(full=True))
        result["full_encode_seconds"] = round(time.perf_counter() - started, 3)
        result["full_encode_cpu_seconds"] = round(time.process_time() - cpu, 3)
        started, cpu = time.perf_counter(), time.process_time()
        written = await saver.save({0: (shard.commit_offset(), shard)})
        result["full_save_seconds"] = round(time.perf_counter() - started, 3)
        result["full_save_cpu_seconds"] = round(time.process_time() - cpu, 3)
        assert written[0].kind == "full" and written[0].size == encoded
        result["full_bytes"] = written[0].size

        changes = second_logins(accounts, change, offset)
        shard.process(changes)
        result["changed_accounts"] = len(changes)
        started, cpu = time.perf_counter(), time.process_time()
        encoded = len(shard.checkpoint(full=False))
        result["delta_encode_seconds"] = round(time.perf_counter() - started, 3)
        result["delta_encode_cpu_seconds"] = round(time.process_time() - cpu, 3)
        started, cpu = time.perf_counter(), time.process_time()
        written = await saver.save({0: (shard.commit_offset(), shard)})
        result["delta_save_seconds"] = round(time.perf_counter() - started, 3)
        result["delta_save_cpu_seconds"] = round(time.process_time() - cpu, 3)
        assert written[0].kind == "delta"
        result["delta_bytes"] = written[0].size
        tracked = len(shard.sessions.accounts)

        del shard
        gc.collect()
        copy = build_shard(settings, 0, geo=geo)
        started, cpu = time.perf_counter(), time.process_time()
        saved = await CheckpointStore(pool, "bench", "portal.events").load(0)
        loaded = time.perf_counter()
        saved.restore(copy)
        done = time.perf_counter()
        result["restore_cpu_seconds"] = round(time.process_time() - cpu, 3)
        assert len(copy.sessions.accounts) == tracked
        result["restore_load_seconds"] = round(loaded - started, 3)
        result["restore_apply_seconds"] = round(done - loaded, 3)
        result["restore_seconds"] = round(done - started, 3)
    finally:
        await pool.close()
        await server.drop_database(database)
    return result


def main() -> None:
    from monitor.support.logging import configure_logging

    configure_logging("warning", "json", stream=sys.stderr)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=2_000_000, help="accounts in the partition (default 2,000,000)")
    parser.add_argument("--views", type=int, default=3, help="pupil records viewed per session (default 3)")
    parser.add_argument("--change", type=float, default=0.01, help="share of accounts changed before the delta (default 0.01)")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.accounts, args.views, args.change, PostgresServer()))))


if __name__ == "__main__":
    main()
