"""Per-partition checkpoints in PostgreSQL: a shard's state and its offset, together.

This is aiokafka's "store offsets outside Kafka" pattern. PostgreSQL holds the truth; the
Kafka commit that follows each checkpoint only keeps lag tooling and a checkpoint-less restart
informed. The order of a checkpoint, and what a crash at each step means:

1. The batch's findings are delivered and acknowledged by every sink (`Delivery.deliver`).
   Crash before this: nothing was checkpointed; the next owner restores the previous checkpoint
   and re-reads from its offset; the same alerts are produced again with the same alert_id and
   the sinks store them once.
2. Every shard's `snapshot()` and `commit_offset()` are written in ONE transaction (save).
   Crash during it: the transaction rolls back; as in 1.
3. The same offsets are committed to Kafka. Crash before this: the checkpoint wins on restart
   (assignment seeks to the checkpoint's offset), so the stale Kafka offset is harmless.
4. Only after 2 and 3 may a revoked partition's state be dropped.

On assignment the shard is restored from its checkpoint and the consumer seeks to the stored
offset; without a checkpoint it starts empty from Kafka's committed offset.
"""

from __future__ import annotations

import math
import socket
import os

SAVE = """
INSERT INTO shard_checkpoints (group_id, topic, partition, next_offset, state, watermark, written_by)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (group_id, topic, partition) DO UPDATE SET
    next_offset = EXCLUDED.next_offset, state = EXCLUDED.state, watermark = EXCLUDED.watermark,
    written_at = now(), written_by = EXCLUDED.written_by
"""

LOAD = """
SELECT next_offset, state FROM shard_checkpoints
WHERE group_id = $1 AND topic = $2 AND partition = $3
"""


class CheckpointStore:
    """Reads and writes the checkpoints of one consumer group's topic."""

    def __init__(self, pool, group_id: str, topic: str) -> None:
        self.pool = pool
        self.group_id = group_id
        self.topic = topic
        self.writer = f"{socket.gethostname()}:{os.getpid()}"

    async def load(self, partition: int) -> tuple[int, bytes] | None:
        row = await self.pool.fetchrow(LOAD, self.group_id, self.topic, partition)
        if row is None:
            return None
        return row["next_offset"], bytes(row["state"])

    async def save(self, checkpoints: dict[int, tuple[int, bytes, float]]) -> None:
        """Write (offset, state, watermark) for each partition in one transaction."""
        if not checkpoints:
            return
        rows = [
            (self.group_id, self.topic, partition, offset, state,
             watermark if math.isfinite(watermark) else None, self.writer)
            for partition, (offset, state, watermark) in checkpoints.items()
        ]
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                await conn.executemany(SAVE, rows)
