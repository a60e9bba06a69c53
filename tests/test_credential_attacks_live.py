"""The network stage live: two `portal-monitor run` processes, four partitions, a password spray
whose failures land on both, and the process holding the spray's stage partition killed with
SIGKILL in the middle of the spray. One spray alert, exactly once, with the id a replay gives;
and the later success onto a tried account, exactly once too.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from monitor.contract.accounts import key_hash
from monitor.service.config import load_settings
from monitor.service.offline import build_offline_pipeline, start_offline
from monitor.support.metrics import Metrics
from detectors.registry import detector_ids
from tests.support.daemon import Daemon, create_topic, fetch, produce, wait_until

pytestmark = pytest.mark.integration
PARTITIONS = 4
OUTCOMES_TOPIC = "portal.login-outcomes"
STAGE_GROUP = "portal-monitor-login-outcomes"
SPRAYER = "203.0.113."
SETTINGS = {"ENGINE__WALL_CLOCK_GRACE": "1s"}  # quiet stage partitions move on within a second or two


def stamp(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}Z"


def accounts_on_every_partition(per_partition: int) -> list[str]:
    """Account ids, `per_partition` of them keyed to each of the events topic's partitions, interleaved."""
    found: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
    n = 0
    while any(len(v) < per_partition for v in found.values()):
        account = f"staff-{n:04d}"
        bucket = found[key_hash(account) % PARTITIONS]
        if len(bucket) < per_partition:
            bucket.append(account)
        n += 1
    return [found[p][i] for i in range(per_partition) for p in range(PARTITIONS)]


def failure(n: int, account: str, at: float) -> dict:
    return {"event_id": f"spray-{n}", "type": "login_failed", "ts": stamp(at), "account_id": account,
            "ip": f"{SPRAYER}{66 + n % 2}", "portal": "schools", "user_agent": "python-requests/2.31"}


async def replayed(events: list[dict]) -> list:
    """What `portal-monitor replay` finds in the same events (the same stage, in process)."""
    settings = load_settings(None, {"PORTAL_MONITOR_ENGINE__ALLOWED_LATENESS": "0s"})

    class Collect:
        name = "collect"
        alerts: list = []

        async def start(self): pass
        async def close(self): pass

        async def write(self, findings):
            self.alerts.extend(findings.alerts)

    sink = Collect()
    sink.alerts = []

    async def run():
        pipeline = build_offline_pipeline(settings, [sink], Metrics(detector_ids(), [sink.name]))
        await start_offline(pipeline)
        raws = [json.dumps(e).encode() for e in events]
        await pipeline.run_file([list(enumerate(raws))])

    await run()
    return sink.alerts


async def spray_alerts(dsn: str) -> list:
    return await fetch(dsn, "SELECT alert_id, severity, account_id, source, ts, evidence::text AS evidence FROM alerts "
                            "WHERE detector = 'password_spray' ORDER BY severity, account_id")


async def stage_checkpoints(dsn: str) -> list:
    return await fetch(dsn, "SELECT partition, next_offset, written_by FROM shard_checkpoints WHERE group_id = $1", STAGE_GROUP)


async def test_spray_over_two_processes_alerts_once_even_when_the_stage_owner_is_killed(kafka_broker, postgres_dsn):
    await create_topic(kafka_broker.bootstrap, PARTITIONS)
    await create_topic(kafka_broker.bootstrap, PARTITIONS, OUTCOMES_TOPIC)
    accounts = accounts_on_every_partition(4)  # 16 accounts, 4 on each partition
    base = time.time() - 300
    first_half = [failure(n, account, base + n) for n, account in enumerate(accounts[:6])]
    second_half = [failure(n, account, base + n) for n, account in enumerate(accounts[6:], start=6)]
    worked = {"event_id": "spray-worked", "type": "login_succeeded", "ts": stamp(base + 120), "account_id": accounts[3],
              "session_id": "s-worked", "ip": f"{SPRAYER}67", "portal": "schools"}
    expected = await replayed(first_half + second_half + [worked])
    assert sorted((a.severity, a.account_id) for a in expected) == [("critical", accounts[3]), ("high", "")]

    daemons = [Daemon(kafka_broker.bootstrap, postgres_dsn, **SETTINGS).start() for _ in range(2)]
    try:
        for daemon in daemons:
            await daemon.wait_ready()
        await wait_until(lambda: _true(all(d.metric("portal_monitor_assigned_partitions") > 0 for d in daemons)
                                       and all(d.metric("portal_monitor_network_stage_partitions") > 0 for d in daemons)),
                         what="both processes own events and stage partitions")
        # Six accounts failing (below the threshold of 10): their events land on all four
        # partitions, so both processes' shards publish outcomes to the one stage partition.
        await produce(kafka_broker.bootstrap, first_half)
        rows = await wait_until(
            lambda: _when(stage_checkpoints(postgres_dsn), lambda rs: sum(r["next_offset"] for r in rs) >= len(first_half)),
            what="the stage checkpointed the first six outcomes",
        )
        holder = [r for r in rows if r["next_offset"] > 0]
        assert len(holder) == 1, rows  # one source network: one stage partition
        pid = int(holder[0]["written_by"].rsplit(":", 1)[1])
        victim = next(d for d in daemons if d.process.pid == pid)
        survivor = next(d for d in daemons if d is not victim)
        assert not await spray_alerts(postgres_dsn)
        victim.kill()  # SIGKILL, mid-window: six of the spray's accounts seen, no alert yet
        await produce(kafka_broker.bootstrap, second_half + [worked])
        await wait_until(lambda: _when(spray_alerts(postgres_dsn), lambda rs: len(rs) >= 2), timeout=90,
                         what="the survivor's spray alerts")
        await asyncio.sleep(3)  # any duplicate would arrive by now
        assert survivor.metric("portal_monitor_network_stage_partitions") == PARTITIONS
        assert survivor.metric("portal_monitor_spray_sources_active") == 1
        assert survivor.metric("portal_monitor_login_failures_total", 'portal="schools"') > 0
        assert survivor.stop() == 0, survivor.output()[-3000:]
    finally:
        for daemon in daemons:
            if daemon.process.poll() is None:
                daemon.kill()
    stored = await spray_alerts(postgres_dsn)
    assert sorted(r["alert_id"] for r in stored) == sorted(a.alert_id for a in expected), (stored, expected)  # once each, the ids of replay
    spray = next(r for r in stored if r["severity"] == "high")
    assert spray["account_id"] == "" and spray["source"] == f"{SPRAYER}0/24"
    worked_row = next(r for r in stored if r["severity"] == "critical")
    assert worked_row["account_id"] == accounts[3] and worked_row["source"] == f"{SPRAYER}0/24"


async def _true(value):
    return value


async def _when(probe, check):
    value = await probe
    return value if check(value) else None
