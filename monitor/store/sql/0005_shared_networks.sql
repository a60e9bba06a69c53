-- Organisation-shared networks (monitor/shared_networks.py): per egress network (IPv4 /32 or
-- IPv6 /64) a bottom-k sketch of the accounts that logged in from it, merged by every process.
-- A network is shared once cardinality(account_hashes) >= networks.shared.min_accounts over at
-- least networks.shared.min_span; rows unseen for networks.shared.forget_after are deleted.
-- account_hashes holds the smallest 64 63-bit blake2b hashes of account ids: no account id is
-- stored, and the union of two sketches capped at 64 is the sketch of the union.
CREATE TABLE IF NOT EXISTS shared_networks (
    network        cidr PRIMARY KEY,
    account_hashes bigint[] NOT NULL,
    first_seen     timestamptz NOT NULL,
    last_seen      timestamptz NOT NULL
);

CREATE INDEX IF NOT EXISTS shared_networks_last_seen ON shared_networks (last_seen);
