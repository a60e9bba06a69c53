"""Per-partition checkpoints in PostgreSQL: a shard's state and its offset, together.

This is aiokafka's "store offsets outside Kafka" pattern. PostgreSQL holds the truth; the
Kafka commit that follows each checkpoint only keeps lag tooling and a checkpoint-less restart
informed. The order of a checkpoint, and what a crash at each step means:

1. The batch's findings are delivered and acknowledged by every sink (`Delivery.deliver`).
   Crash before this: nothing was checkpointed; the next owner restores the previous checkpoint
   and re-reads from its offset; the same alerts are produced again with the same alert_id and
   the sinks store them once.
2. Every shard's state (a full snapshot or a delta, below) and `commit_offset()` are written in
   ONE transaction (save). Crash during it: the transaction rolls back; as in 1. The shard
   counts what that checkpoint held as written only once the transaction committed
   (`Shard.checkpointed`), so a delta that was never stored is carried by the next one.
3. The same offsets are committed to Kafka. Crash before this: the checkpoint wins on restart
   (assignment seeks to the checkpoint's offset), so the stale Kafka offset is harmless.
4. Only after 2 and 3 may a revoked partition's state be dropped.

On assignment the shard is restored from its checkpoint and the consumer seeks to the stored
offset; without a checkpoint it starts empty from Kafka's committed offset.

Incremental: a partition's state is a chain, its last full snapshot then the deltas written
after it (`Shard.checkpoint(full=False)`: the accounts that changed since the checkpoint before),
so a checkpoint costs what changed, not what is held. A full snapshot is written again
(compaction, which replaces the chain) when the deltas since the last one add up to
`compact_ratio` of its size or number `max_deltas`: restore then reads at most (1 + ratio)
times a snapshot, and the cost of compaction, spread over the deltas, stays proportional to
them. Every piece is stored in parts of at most `PART_BYTES` (a bytea holds at most 1 GB).
A delta is written only on top of the chain this process read or wrote last (`head_seq`
checked under the row's lock): if another process wrote the partition since, the
transaction fails and this process writes a full snapshot next.
"""

from __future__ import annotations

import math
import os
import socket
from typing import NamedTuple

from monitor.contract.durations import Seconds
from monitor.contract.settings import Section
from monitor.engine.shard import Shard

PART_BYTES = 64 << 20


class CheckpointSettings(Section):
    """Per-partition state checkpoints in PostgreSQL, written with the partition's offset."""

    enabled: bool = True
    interval: Seconds = Seconds(5)
    every_events: int = 100_000
    incremental: bool = True
    """Write what changed since the last checkpoint (a delta), with a full snapshot now and then;
    false: a full snapshot every time."""
    compact_ratio: float = 0.5
    """A full snapshot once the deltas written since the last one add up to this share of its size."""
    max_deltas: int = 200
    """...or once this many deltas were written since it."""


LOCK_HEADER = """
SELECT base_seq, head_seq FROM shard_checkpoints
WHERE group_id = $1 AND topic = $2 AND partition = $3
FOR UPDATE
"""

SAVE_HEADER = """
INSERT INTO shard_checkpoints (group_id, topic, partition, next_offset, state, watermark, written_by, base_seq, head_seq)
VALUES ($1, $2, $3, $4, ''::bytea, $5, $6, $7, $8)
ON CONFLICT (group_id, topic, partition) DO UPDATE SET
    next_offset = EXCLUDED.next_offset, state = EXCLUDED.state, watermark = EXCLUDED.watermark,
    written_at = now(), written_by = EXCLUDED.written_by,
    base_seq = EXCLUDED.base_seq, head_seq = EXCLUDED.head_seq
"""

DROP_PIECES = """
DELETE FROM shard_checkpoint_pieces WHERE group_id = $1 AND topic = $2 AND partition = $3
"""

SAVE_PIECE = """
INSERT INTO shard_checkpoint_pieces (group_id, topic, partition, seq, part, kind, data)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""

LOAD = """
SELECT next_offset, state, base_seq, head_seq FROM shard_checkpoints
WHERE group_id = $1 AND topic = $2 AND partition = $3
"""

LOAD_PIECES = """
SELECT seq, kind, data FROM shard_checkpoint_pieces
WHERE group_id = $1 AND topic = $2 AND partition = $3 AND seq BETWEEN $4 AND $5
ORDER BY seq, part
"""


class ChainMoved(RuntimeError):
    """Another process wrote the partition's checkpoint since this one read or wrote it."""


class Chain(NamedTuple):
    """What this process knows of a partition's stored chain: enough to decide on compaction."""

    base_seq: int
    head_seq: int
    base_bytes: int
    delta_bytes: int
    deltas: int


class Saved(NamedTuple):
    """A partition's stored checkpoint: its offset, full snapshot and the deltas after it."""

    offset: int
    base: bytes
    deltas: list[bytes]

    @property
    def size(self) -> int:
        return len(self.base) + sum(len(delta) for delta in self.deltas)

    def restore(self, shard: Shard) -> None:
        """Load it into a fresh shard: the snapshot, then each delta in written order."""
        shard.restore(self.base)
        for delta in self.deltas:
            shard.apply_delta(delta)


class Written(NamedTuple):
    """One partition's piece as the last `save` wrote it (for metrics and logs)."""

    kind: str  # "full" or "delta"
    size: int


class CheckpointStore:
    """Reads and writes the checkpoints of one consumer group's topic."""

    def __init__(self, pool, group_id: str, topic: str, settings: CheckpointSettings | None = None) -> None:
        self.pool = pool
        self.group_id = group_id
        self.topic = topic
        self.settings = settings if settings is not None else CheckpointSettings()
        self.writer = f"{socket.gethostname()}:{os.getpid()}"
        self.chains: dict[int, Chain] = {}  # partitions whose stored chain this process knows

    async def load(self, partition: int) -> Saved | None:
        key = (self.group_id, self.topic, partition)
        async with self.pool.acquire() as conn:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                row = await conn.fetchrow(LOAD, *key)
                if row is None:
                    self.chains.pop(partition, None)
                    return None
                if row["base_seq"] is None:  # written before incremental checkpoints
                    self.chains.pop(partition, None)  # so the next checkpoint is a full one
                    return Saved(row["next_offset"], bytes(row["state"]), [])
                base_seq, head_seq = row["base_seq"], row["head_seq"]
                pieces = await conn.fetch(LOAD_PIECES, *key, base_seq, head_seq)
        by_seq: dict[int, list[bytes]] = {}
        for piece in pieces:
            by_seq.setdefault(piece["seq"], []).append(piece["data"])
        if sorted(by_seq) != list(range(base_seq, head_seq + 1)):
            raise RuntimeError(f"checkpoint of partition {partition} is missing pieces {base_seq}..{head_seq}")
        blobs = [b"".join(by_seq[seq]) for seq in range(base_seq, head_seq + 1)]
        base, deltas = blobs[0], blobs[1:]
        self.chains[partition] = Chain(base_seq, head_seq, len(base), sum(map(len, deltas)), len(deltas))
        return Saved(row["next_offset"], base, deltas)

    def forget(self, partitions) -> None:
        """The partitions were revoked: another process may write them now."""
        for partition in partitions:
            self.chains.pop(partition, None)

    def _full_due(self, partition: int) -> bool:
        chain = self.chains.get(partition)
        settings = self.settings
        return (
            not settings.incremental
            or chain is None
            or chain.deltas >= settings.max_deltas
            or chain.delta_bytes >= settings.compact_ratio * chain.base_bytes
        )

    async def save(self, checkpoints: dict[int, tuple[int, Shard]]) -> dict[int, Written]:
        """Write each partition's state (full or delta) and offset, all in one transaction."""
        if not checkpoints:
            return {}
        pieces = {}
        for partition, (offset, shard) in checkpoints.items():
            full = self._full_due(partition)
            pieces[partition] = (offset, shard, full, shard.checkpoint(full))
        chains: dict[int, Chain] = {}
        try:
            async with self.pool.acquire() as conn:
                async with conn.transaction():
                    for partition, (offset, shard, full, data) in pieces.items():
                        chains[partition] = await self._write(conn, partition, offset, shard.watermark, full, data)
        except BaseException:
            for partition in checkpoints:
                self.chains.pop(partition, None)  # not knowing what is stored: a full one next
            raise
        written = {}
        for partition, (offset, shard, full, data) in pieces.items():
            shard.checkpointed()
            self.chains[partition] = chains[partition]
            written[partition] = Written("full" if full else "delta", len(data))
        return written

    async def _write(self, conn, partition: int, offset: int, watermark: float, full: bool, data: bytes) -> Chain:
        key = (self.group_id, self.topic, partition)
        row = await conn.fetchrow(LOCK_HEADER, *key)
        stored_head = row["head_seq"] if row is not None else None
        chain = self.chains.get(partition)
        if not full and (chain is None or stored_head != chain.head_seq):
            raise ChainMoved(f"partition {partition}: checkpoint written by another process since")
        seq = (stored_head or 0) + 1
        if full:
            await conn.execute(DROP_PIECES, *key)
        view = memoryview(data)
        parts = [view[i : i + PART_BYTES] for i in range(0, max(len(data), 1), PART_BYTES)] or [view]
        kind = "full" if full else "delta"
        await conn.executemany(SAVE_PIECE, [(*key, seq, n, kind, part) for n, part in enumerate(parts)])
        base_seq = seq if full else chain.base_seq  # type: ignore[union-attr]
        await conn.execute(
            SAVE_HEADER, *key, offset, watermark if math.isfinite(watermark) else None, self.writer, base_seq, seq
        )
        if full:
            return Chain(seq, seq, len(data), 0, 0)
        return Chain(base_seq, seq, chain.base_bytes, chain.delta_bytes + len(data), chain.deltas + 1)  # type: ignore[union-attr]
