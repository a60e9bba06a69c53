"""Fault tests with real processes: kill -9, a second process taking over, a poison record,
clock skew. Each asserts no alert lost, none duplicated, and state carried over.

The expected alerts are what the same records give when replayed through a fresh shard
in-process (alert ids are deterministic), so "lost" and "duplicated" are exact.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from monitor.contract.accounts import key_hash
from monitor.service.config import load_settings
from monitor.service.shards import build_shard
from tests.support.daemon import Daemon, create_topic, fetch, produce, wait_until

pytestmark = pytest.mark.integration
PARTITIONS = 4


def stamp(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}Z"


def first_logins(accounts: int, base: float, views: int = 3) -> list[dict]:
    """Every account logs in from its school network and views a few pupil records."""
    events = []
    for n in range(accounts):
        account, at = f"staff-{n:05d}", base + n * 0.001
        events.append({"event_id": f"a-{n}", "type": "login_succeeded", "ts": stamp(at), "account_id": account,
                       "session_id": f"s1-{n}", "ip": f"81.2.{n % 200}.10", "portal": "schools"})
        for v in range(views):
            events.append({"event_id": f"a-{n}-{v}", "type": "page_view", "ts": stamp(at + 0.5 + v * 0.01),
                           "account_id": account, "session_id": f"s1-{n}", "ip": f"81.2.{n % 200}.10",
                           "resource": f"/pupils/{4000 + v}/attendance"})
    return events


def second_logins(accounts: int, base: float) -> list[dict]:
    """Every other account logs in again from a home network while its first session is live."""
    return [
        {"event_id": f"b-{n}", "type": "login_succeeded", "ts": stamp(base + n * 0.001), "account_id": f"staff-{n:05d}",
         "session_id": f"s2-{n}", "ip": f"86.150.{n % 200}.7", "portal": "schools"}
        for n in range(0, accounts, 2)
    ]


def expected_alerts(raws: list[bytes]) -> list:
    settings = load_settings(None, {"PORTAL_MONITOR_ENGINE__ALLOWED_LATENESS": "0s"})
    shard = build_shard(settings, 0)
    findings = shard.process(list(enumerate(raws)))
    findings.extend(shard.drain())
    return findings.alerts


def expected_alert_ids(raws: list[bytes]) -> set[str]:
    return {alert.alert_id for alert in expected_alerts(raws)}


async def checkpointed_offsets(dsn: str) -> int:
    rows = await fetch(dsn, "SELECT coalesce(sum(next_offset), 0) AS n, count(*) AS c FROM shard_checkpoints")
    return int(rows[0]["n"])


async def stored_alert_ids(dsn: str) -> list[str]:
    return [row["alert_id"] for row in await fetch(dsn, "SELECT alert_id FROM alerts")]


async def test_kill_9_mid_batch_then_restart_loses_and_duplicates_nothing(kafka_broker, postgres_dsn):
    await create_topic(kafka_broker.bootstrap, PARTITIONS)
    base = time.time() - 120
    accounts = 400
    raws = await produce(kafka_broker.bootstrap, first_logins(accounts, base))
    # Small batches, so the kill lands between batches with some alerts stored and some not.
    daemon = Daemon(kafka_broker.bootstrap, postgres_dsn, SOURCE__BATCH_MAX_RECORDS="20").start()
    try:
        await daemon.wait_ready()
        await wait_until(lambda: _at_least(checkpointed_offsets(postgres_dsn), len(raws)), what="phase 1 checkpointed")
        views = [dict(e, event_id="more-" + e["event_id"]) for e in first_logins(accounts, base + 31) if e["type"] == "page_view"]
        second = second_logins(accounts, base + 30) + views
        raws += await produce(kafka_broker.bootstrap, second)
        await wait_until(lambda: stored_alert_ids(postgres_dsn), interval=0.05, what="a first alert")
        daemon.kill()  # mid-stream: some alerts stored, the checkpoint behind them
        print(f"alerts stored when killed: {len(await stored_alert_ids(postgres_dsn))}")
    finally:
        if daemon.process.poll() is None:
            daemon.kill()
    expected = expected_alert_ids(raws)
    assert len(expected) == accounts // 2
    restarted = Daemon(kafka_broker.bootstrap, postgres_dsn).start()
    try:
        stored = await wait_until(
            lambda: _when(stored_alert_ids(postgres_dsn), lambda ids: len(ids) >= len(expected)),
            what="every alert after the restart",
        )
        await wait_until(lambda: _at_least(checkpointed_offsets(postgres_dsn), len(raws)), what="all checkpointed")
        assert restarted.stop() == 0, restarted.output()[-3000:]
    finally:
        if restarted.process.poll() is None:
            restarted.kill()
    stored = await stored_alert_ids(postgres_dsn)
    assert set(stored) == expected  # none lost, none invented
    assert len(stored) == len(expected)  # none duplicated


async def test_survivor_takes_over_and_detects_logins_whose_first_session_it_never_saw(kafka_broker, postgres_dsn):
    await create_topic(kafka_broker.bootstrap, PARTITIONS)
    base = time.time() - 120
    accounts = 200
    first, other = (Daemon(kafka_broker.bootstrap, postgres_dsn).start(), Daemon(kafka_broker.bootstrap, postgres_dsn).start())
    try:
        await first.wait_ready()
        await other.wait_ready()
        await wait_until(lambda: _true(first.metric("portal_monitor_assigned_partitions") > 0
                                       and other.metric("portal_monitor_assigned_partitions") > 0),
                         what="both processes own partitions")
        raws = await produce(kafka_broker.bootstrap, first_logins(accounts, base))
        await wait_until(lambda: _at_least(checkpointed_offsets(postgres_dsn), len(raws)), what="phase 1 checkpointed")
        writers = await fetch(postgres_dsn, "SELECT DISTINCT written_by FROM shard_checkpoints")
        assert len(writers) == 2, writers  # both processes held state
        victim_partitions = first.metric("portal_monitor_assigned_partitions")
        assert victim_partitions > 0
        first.kill()
        raws += await produce(kafka_broker.bootstrap, second_logins(accounts, base + 30))
        expected = expected_alert_ids(raws)
        stored = await wait_until(
            lambda: _when(stored_alert_ids(postgres_dsn), lambda ids: len(ids) >= len(expected)),
            timeout=90,
            what="the survivor's alerts for every account",
        )
        assert other.metric("portal_monitor_assigned_partitions") == PARTITIONS
        assert other.stop() == 0, other.output()[-3000:]
    finally:
        for daemon in (first, other):
            if daemon.process.poll() is None:
                daemon.kill()
    stored = await stored_alert_ids(postgres_dsn)
    assert set(stored) == expected and len(stored) == len(expected) == accounts // 2


async def test_poison_and_far_future_records_do_not_stop_detection_or_move_the_clock(kafka_broker, postgres_dsn):
    await create_topic(kafka_broker.bootstrap, PARTITIONS)
    base = time.time() - 120
    future = {"event_id": "f-1", "type": "login_succeeded", "ts": "2099-01-01T00:00:00Z", "account_id": "staff-00000",
              "session_id": "sf", "ip": "203.0.113.9"}
    poison = [b"\xff\xfe\x00binary", b'{"event_id": "x", "type": "login_succeeded"}', json.dumps(future).encode()]
    raws = await produce(kafka_broker.bootstrap, first_logins(20, base))
    await produce(kafka_broker.bootstrap, poison)
    raws += await produce(kafka_broker.bootstrap, second_logins(20, base + 30))
    daemon = Daemon(kafka_broker.bootstrap, postgres_dsn).start()
    try:
        expected = expected_alert_ids(raws)
        await wait_until(lambda: _when(stored_alert_ids(postgres_dsn), lambda ids: len(ids) >= len(expected)),
                         what="alerts after the poison")
        assert daemon.metric("portal_monitor_invalid_events_total", 'reason="not_json"') == 1
        assert daemon.metric("portal_monitor_invalid_events_total", 'reason="missing_field"') == 1
        assert daemon.metric("portal_monitor_invalid_events_total", 'reason="future_timestamp"') == 1
        assert daemon.metric("portal_monitor_watermark_timestamp_seconds") < time.time() * PARTITIONS
        assert daemon.stop() == 0
    finally:
        if daemon.process.poll() is None:
            daemon.kill()
    assert set(await stored_alert_ids(postgres_dsn)) == expected
    rows = await fetch(postgres_dsn, "SELECT max(watermark) AS w FROM shard_checkpoints")
    assert rows[0]["w"] < time.time() + 60  # the 2099 event did not fast-forward event time


async def _at_least(awaitable, n):
    return (await awaitable) >= n


async def _when(awaitable, predicate):
    value = await awaitable
    return value if predicate(value) else None


async def _true(value):
    return value


async def test_postgres_restart_mid_stream_delivers_every_alert_once(kafka_broker, owned_postgres):
    dsn = owned_postgres.dsn()
    await create_topic(kafka_broker.bootstrap, PARTITIONS)
    base = time.time() - 120
    raws = await produce(kafka_broker.bootstrap, first_logins(100, base))
    daemon = Daemon(kafka_broker.bootstrap, dsn).start()
    try:
        await daemon.wait_ready()
        await wait_until(lambda: _at_least(checkpointed_offsets(dsn), len(raws)), what="phase 1 checkpointed")
        owned_postgres.stop()
        raws += await produce(kafka_broker.bootstrap, second_logins(100, base + 30))
        await wait_until(lambda: _true(daemon.metric("portal_monitor_sink_deliveries_total", 'outcome="failed"') > 0),
                         what="the store failing")
        await asyncio.sleep(2)  # the daemon retries, consumption paused, nothing committed
        owned_postgres.start()
        expected = expected_alert_ids(raws)
        await wait_until(lambda: _when(stored_alert_ids(dsn), lambda ids: len(ids) >= len(expected)),
                         what="every alert after the store came back")
        await wait_until(lambda: _at_least(checkpointed_offsets(dsn), len(raws)), what="all checkpointed")
        assert daemon.stop() == 0, daemon.output()[-3000:]
    finally:
        if daemon.process.poll() is None:
            daemon.kill()
    stored = await stored_alert_ids(dsn)
    assert set(stored) == expected and len(stored) == len(expected) == 50


async def test_sigterm_with_the_store_down_exits_by_the_deadline_and_loses_nothing(kafka_broker, owned_postgres):
    dsn = owned_postgres.dsn()
    await create_topic(kafka_broker.bootstrap, PARTITIONS)
    base = time.time() - 120
    raws = await produce(kafka_broker.bootstrap, first_logins(60, base))
    daemon = Daemon(kafka_broker.bootstrap, dsn, SERVICE__SHUTDOWN_TIMEOUT="3s").start()
    try:
        await daemon.wait_ready()
        await wait_until(lambda: _at_least(checkpointed_offsets(dsn), len(raws)), what="phase 1 checkpointed")
        owned_postgres.stop()
        raws += await produce(kafka_broker.bootstrap, second_logins(60, base + 30))
        # Read and run (so their alerts are in delivery) before the signal: a failure counted
        # earlier, by the dormancy sweep of an older batch, is not enough.
        await wait_until(lambda: _true(daemon.metric("portal_monitor_events_total") >= len(raws)),
                         what="the second logins read")
        await wait_until(lambda: _true(daemon.metric("portal_monitor_sink_deliveries_total", 'outcome="failed"') > 0),
                         what="the store failing")
        started = time.monotonic()
        code = daemon.stop(timeout=20)
        took = time.monotonic() - started
    finally:
        if daemon.process.poll() is None:
            daemon.kill()
    assert code == 1, daemon.output()[-3000:]  # could not drain: says so, commits nothing
    assert 2.5 <= took < 10, took
    assert "not committing" in daemon.output()
    owned_postgres.start()
    expected = expected_alert_ids(raws)
    assert await stored_alert_ids(dsn) == []
    restarted = Daemon(kafka_broker.bootstrap, dsn).start()
    try:
        await wait_until(lambda: _when(stored_alert_ids(dsn), lambda ids: len(ids) >= len(expected)),
                         what="the undelivered alerts, re-derived after restart")
        assert restarted.stop() == 0
    finally:
        if restarted.process.poll() is None:
            restarted.kill()
    stored = await stored_alert_ids(dsn)
    assert set(stored) == expected and len(stored) == len(expected) == 30


async def test_broker_restart_mid_stream_loses_and_duplicates_nothing(durable_kafka_broker, postgres_dsn):
    broker = durable_kafka_broker
    await create_topic(broker.bootstrap, PARTITIONS)
    base = time.time() - 120
    raws = await produce(broker.bootstrap, first_logins(100, base))
    daemon = Daemon(broker.bootstrap, postgres_dsn).start()
    try:
        await daemon.wait_ready()
        await wait_until(lambda: _at_least(checkpointed_offsets(postgres_dsn), len(raws)), what="phase 1 checkpointed")
        broker.stop()
        await asyncio.sleep(3)  # the daemon loses the broker; it must neither crash nor commit
        assert daemon.process.poll() is None, daemon.output()[-3000:]
        broker.start()  # same port, same S3-backed log
        raws += await produce(broker.bootstrap, second_logins(100, base + 30))
        expected = expected_alert_ids(raws)
        await wait_until(lambda: _when(stored_alert_ids(postgres_dsn), lambda ids: len(ids) >= len(expected)),
                         timeout=90, what="alerts after the broker came back")
        await wait_until(lambda: _at_least(checkpointed_offsets(postgres_dsn), len(raws)), what="all checkpointed")
        assert daemon.stop() == 0, daemon.output()[-3000:]
    finally:
        if daemon.process.poll() is None:
            daemon.kill()
    stored = await stored_alert_ids(postgres_dsn)
    assert set(stored) == expected and len(stored) == len(expected) == 50


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def test_burst_while_the_store_is_down_pauses_consumption_with_bounded_memory(kafka_broker, owned_postgres):
    dsn = owned_postgres.dsn()
    await create_topic(kafka_broker.bootstrap, PARTITIONS)
    base = time.time() - 120
    daemon = Daemon(kafka_broker.bootstrap, dsn, SOURCE__BATCH_MAX_RECORDS="1000").start()
    try:
        await daemon.wait_ready()
        raws = await produce(kafka_broker.bootstrap, first_logins(50, base))
        await wait_until(lambda: _at_least(checkpointed_offsets(dsn), len(raws)), what="warm-up checkpointed")
        owned_postgres.stop()
        burst = first_logins(5000, base + 10, views=9)  # 50,000 records, ~100x the warm-up
        for event in burst:
            event["event_id"] = "burst-" + event["event_id"]
            event["account_id"] = "burst-" + event["account_id"]
        # Alerts first: their delivery blocks, so the burst behind them must wait in Kafka, not here.
        # (Records that raise nothing to deliver keep flowing while only checkpoints fail.)
        raws += await produce(kafka_broker.bootstrap, second_logins(50, base + 30) + burst)
        await wait_until(lambda: _true(daemon.metric("portal_monitor_sink_deliveries_total", 'outcome="failed"') > 0),
                         what="the store failing")
        read_when_paused = daemon.metric("portal_monitor_events_total")
        rss_when_paused = rss_bytes(daemon.process.pid)
        await asyncio.sleep(4)
        assert daemon.metric("portal_monitor_events_total") == read_when_paused  # consumption paused
        assert read_when_paused < len(raws) / 2  # it did not read the burst ahead into memory
        assert rss_bytes(daemon.process.pid) < rss_when_paused + 20 * 2**20
        assert daemon.metric("portal_monitor_assigned_partitions") == PARTITIONS  # still in the group
        owned_postgres.start()
        expected = expected_alert_ids(raws)
        await wait_until(lambda: _when(stored_alert_ids(dsn), lambda ids: len(ids) >= len(expected)),
                         timeout=120, what="every alert once the store is back")
        await wait_until(lambda: _at_least(checkpointed_offsets(dsn), len(raws)), timeout=60, what="all read and checkpointed")
        assert daemon.stop() == 0, daemon.output()[-3000:]
    finally:
        if daemon.process.poll() is None:
            daemon.kill()
    stored = await stored_alert_ids(dsn)
    assert set(stored) == expected and len(stored) == len(expected) == 25


async def test_without_checkpoints_each_delivered_batch_commits_its_own_offsets(kafka_broker, postgres_dsn):
    """checkpoint.enabled = false: the delivery of each batch (running beside the next batch,
    monitor.service.lifecycle) commits that batch's offsets, never the next one's. Killed mid-stream, every
    alert raised by a record below a committed offset is already stored. (Without checkpoints a
    restart starts with empty state, so a second login whose first session was committed before
    is not recognised: that is what checkpoints are for, and not asserted here.)"""
    from tests.test_daemon_kafka_postgres import committed_offsets

    await create_topic(kafka_broker.bootstrap, PARTITIONS)
    base = time.time() - 120
    accounts = 2000  # 9,000 records in batches of 20: the kill lands mid-stream
    group = "pm-no-checkpoints"
    settings = dict(CHECKPOINT__ENABLED="false", SOURCE__BATCH_MAX_RECORDS="20")
    raws = await produce(kafka_broker.bootstrap, first_logins(accounts, base) + second_logins(accounts, base + 30))
    # Offsets start at 0 and run without gaps, in production order per partition. (tansu's
    # ListOffsets answers the last batch's base offset + 1, so end_offsets is no guide.)
    ends = {p: 0 for p in range(PARTITIONS)}
    trigger_offset = {}  # account -> (partition, offset) of its second login, which raises its alert
    for raw in raws:
        event = json.loads(raw)
        partition = key_hash(event["account_id"]) % PARTITIONS
        if event["event_id"].startswith("b-"):
            trigger_offset[event["account_id"]] = (partition, ends[partition])
        ends[partition] += 1
    expected = {alert.account_id: alert.alert_id for alert in expected_alerts(raws)}
    daemon = Daemon(kafka_broker.bootstrap, postgres_dsn, group=group, **settings).start()
    try:
        await daemon.wait_ready()
        await wait_until(lambda: stored_alert_ids(postgres_dsn), interval=0.05, what="a first alert")
        daemon.kill()
    finally:
        if daemon.process.poll() is None:
            daemon.kill()
    committed, _ = await committed_offsets(kafka_broker.bootstrap, group, PARTITIONS)
    stored = set(await stored_alert_ids(postgres_dsn))
    covered = {alert_id for account, alert_id in expected.items()
               if trigger_offset[account][1] < committed[trigger_offset[account][0]]}
    print(f"killed with {len(stored)} alerts stored; committed {committed} of {ends}; {len(covered)} alerts below them")
    assert covered, "the kill came before any commit: nothing checked"
    assert covered <= stored, sorted(covered - stored)[:5]
    restarted = Daemon(kafka_broker.bootstrap, postgres_dsn, group=group, **settings).start()
    try:
        await restarted.wait_ready()

        async def all_committed():
            done, _ = await committed_offsets(kafka_broker.bootstrap, group, PARTITIONS)
            return done == ends and done

        await wait_until(all_committed, what="every offset committed")
        assert restarted.stop() == 0, restarted.output()[-3000:]
    finally:
        if restarted.process.poll() is None:
            restarted.kill()
    assert set(await stored_alert_ids(postgres_dsn)) <= set(expected.values())  # none invented
