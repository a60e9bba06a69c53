-- Incremental checkpoints: a partition's state is its last full snapshot plus the deltas
-- written after it (what changed since the checkpoint before), each cut into parts small
-- enough for one bytea value (PostgreSQL's limit is 1 GB; parts are at most 64 MiB). A full
-- snapshot now and then (compaction) replaces the chain. `shard_checkpoints` keeps one row
-- per partition, written in the same transaction as the pieces: the offset, and which pieces
-- are its state (base_seq to head_seq). A row with base_seq NULL is one written before this
-- migration: its `state` is the whole snapshot.

ALTER TABLE shard_checkpoints
    ADD COLUMN base_seq bigint,
    ADD COLUMN head_seq bigint;

CREATE TABLE shard_checkpoint_pieces (
    group_id    text NOT NULL,
    topic       text NOT NULL,
    partition   integer NOT NULL,
    seq         bigint NOT NULL,   -- 1, 2, ... per partition: the order the pieces apply in
    part        integer NOT NULL,  -- 0, 1, ...: a piece larger than one part is cut in several
    kind        text NOT NULL CHECK (kind IN ('full', 'delta')),
    data        bytea NOT NULL,
    PRIMARY KEY (group_id, topic, partition, seq, part)
);
