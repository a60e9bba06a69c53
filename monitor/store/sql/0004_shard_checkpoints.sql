-- Per-partition checkpoints: the shard's state and the offset it is valid at, written in one
-- transaction, so whichever process is assigned the partition next carries on from there.

CREATE TABLE shard_checkpoints (
    group_id        text NOT NULL,
    topic           text NOT NULL,
    partition       integer NOT NULL,
    next_offset     bigint NOT NULL,
    state           bytea NOT NULL,
    watermark       double precision,
    written_at      timestamptz NOT NULL DEFAULT now(),
    written_by      text NOT NULL,
    PRIMARY KEY (group_id, topic, partition)
);
