"""Incremental checkpoints in a real PostgreSQL: chains of deltas, compaction, failures, takeover."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from monitor import store
from monitor.service import checkpoints as checkpoints_module
from monitor.service.checkpoints import ChainMoved, CheckpointSettings, CheckpointStore
from monitor.service.shards import build_shard
from tests.test_detector_cases import case_settings
from tests.test_shard_checkpoint_deltas import state_of

CASE = Path(__file__).parent / "detector_cases" / "geo_lancashire_then_lagos_is_impossible_travel"
LOGIN = (
    '{{"event_id": "{event}", "type": "login_succeeded", "ts": "2026-03-02T08:{minute:02d}:{second:02d}Z", '
    '"account_id": "acct-{account}", "session_id": "s-{event}", "ip": "81.2.69.{host}"}}'
)


def logins(first: int, count: int, accounts: range) -> list[tuple[int, bytes]]:
    """`count` logins from offset `first`, cycling over `accounts`, a second apart."""
    out = []
    for n in range(first, first + count):
        account = accounts[n % len(accounts)]
        line = LOGIN.format(event=n, minute=(n // 60) % 60, second=n % 60, account=account, host=account % 250)
        out.append((n, line.encode()))
    return out


async def pieces(pool) -> list[tuple[int, str]]:
    rows = await pool.fetch("SELECT DISTINCT seq, kind FROM shard_checkpoint_pieces ORDER BY seq")
    return [(row["seq"], row["kind"]) for row in rows]


@pytest.fixture
async def pool(postgres_dsn):
    pool = await asyncpg.create_pool(postgres_dsn, min_size=1, max_size=3)
    await store.migrate(pool)
    yield pool
    await pool.close()


async def test_deltas_then_compaction_restore_exactly(pool, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(checkpoints_module, "PART_BYTES", 4096)  # several parts per piece
    settings = case_settings(CASE, tmp_path)
    shard = build_shard(settings, 0)
    saver = CheckpointStore(pool, "g", "t", CheckpointSettings(compact_ratio=0.05, max_deltas=100))
    offset = 1
    kinds = []
    for round_ in range(8):
        batch = logins(offset, 300 if round_ == 0 else 20, range(300) if round_ == 0 else range(round_ * 7, round_ * 7 + 20))
        shard.process(batch)
        offset += len(batch)
        written = await saver.save({0: (shard.commit_offset(), shard)})
        kinds.append(written[0].kind)
        saved = await CheckpointStore(pool, "g", "t").load(0)
        assert saved is not None and saved.offset == shard.commit_offset()
        copy = build_shard(settings, 0)
        saved.restore(copy)
        assert state_of(copy) == state_of(shard), f"round {round_}"
    assert kinds[0] == "full" and "delta" in kinds and kinds.count("full") >= 2, kinds
    # Compaction replaced the chain: only the last full snapshot and the deltas after it are kept.
    stored = await pieces(pool)
    last_full = max(seq for seq, kind in stored if kind == "full")
    assert stored[0] == (last_full, "full") and all(kind == "delta" for _, kind in stored[1:])
    parts = await pool.fetchval("SELECT count(*) FROM shard_checkpoint_pieces WHERE seq = $1", last_full)
    assert parts > 1


async def test_a_failed_delta_write_leaves_the_previous_checkpoint_and_the_next_carries_it(pool, tmp_path) -> None:
    """A crash between two delta writes, as PostgreSQL sees it: the second transaction rolls
    back (a trigger refuses it). The stored checkpoint stays exactly the first delta's state, and
    what the lost delta held is in the next checkpoint."""
    settings = case_settings(CASE, tmp_path)
    shard = build_shard(settings, 0)
    saver = CheckpointStore(pool, "g", "t")
    shard.process(logins(1, 200, range(200)))
    assert (await saver.save({0: (shard.commit_offset(), shard)}))[0].kind == "full"
    shard.process(logins(201, 10, range(5)))
    assert (await saver.save({0: (shard.commit_offset(), shard)}))[0].kind == "delta"
    at_first_delta = state_of(shard)
    offset_then = shard.commit_offset()

    await pool.execute(
        """CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$ LANGUAGE plpgsql;
           CREATE TRIGGER refuse BEFORE UPDATE ON shard_checkpoints FOR EACH ROW EXECUTE FUNCTION refuse();"""
    )
    shard.process(logins(211, 10, range(100, 110)))
    with pytest.raises(asyncpg.RaiseError):
        await saver.save({0: (shard.commit_offset(), shard)})
    saved = await CheckpointStore(pool, "g", "t").load(0)
    assert saved.offset == offset_then and len(saved.deltas) == 1
    copy = build_shard(settings, 0)
    saved.restore(copy)
    assert state_of(copy) == at_first_delta

    await pool.execute("DROP TRIGGER refuse ON shard_checkpoints")
    shard.process(logins(221, 10, range(150, 160)))
    assert (await saver.save({0: (shard.commit_offset(), shard)}))[0].kind == "full"  # not knowing what is stored
    shard.process(logins(231, 10, range(170, 180)))
    assert (await saver.save({0: (shard.commit_offset(), shard)}))[0].kind == "delta"
    saved = await CheckpointStore(pool, "g", "t").load(0)
    copy = build_shard(settings, 0)
    saved.restore(copy)
    assert state_of(copy) == state_of(shard)


async def test_a_new_owner_carries_the_chain_on_and_a_stale_owner_cannot_add_to_it(pool, tmp_path) -> None:
    settings = case_settings(CASE, tmp_path)
    old_owner = CheckpointStore(pool, "g", "t")
    shard = build_shard(settings, 0)
    shard.process(logins(1, 100, range(100)))
    await old_owner.save({0: (shard.commit_offset(), shard)})

    new_owner = CheckpointStore(pool, "g", "t")
    taken = build_shard(settings, 0)
    (await new_owner.load(0)).restore(taken)
    taken.process(logins(101, 10, range(10)))
    assert (await new_owner.save({0: (taken.commit_offset(), taken)}))[0].kind == "delta"

    shard.process(logins(101, 10, range(50, 60)))  # the old owner has not noticed the rebalance yet
    with pytest.raises(ChainMoved):
        await old_owner.save({0: (shard.commit_offset(), shard)})
    saved = await CheckpointStore(pool, "g", "t").load(0)
    copy = build_shard(settings, 0)
    saved.restore(copy)
    assert state_of(copy) == state_of(taken)


async def test_a_checkpoint_written_before_the_migration_is_restored_then_replaced_by_a_full_one(pool, tmp_path) -> None:
    settings = case_settings(CASE, tmp_path)
    shard = build_shard(settings, 0)
    shard.process(logins(1, 50, range(50)))
    await pool.execute(
        "INSERT INTO shard_checkpoints (group_id, topic, partition, next_offset, state, written_by) VALUES ('g', 't', 0, $1, $2, 'old')",
        shard.commit_offset(), shard.snapshot(),
    )
    saver = CheckpointStore(pool, "g", "t")
    saved = await saver.load(0)
    copy = build_shard(settings, 0)
    saved.restore(copy)
    assert state_of(copy) == state_of(shard) and saved.deltas == []
    copy.process(logins(51, 5, range(5)))
    assert (await saver.save({0: (copy.commit_offset(), copy)}))[0].kind == "full"
