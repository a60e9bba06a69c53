-- The account registry: every account seen in the events or imported from the roster, its
-- idle clock and its status. Dormancy is swept from here with index range scans, so millions
-- of accounts cost the monitor no memory.

CREATE TABLE accounts (
    account_id        text PRIMARY KEY,
    -- Kafka's default partitioner hash of the account id (murmur2, positive): the shard of
    -- partition key_hash % partitions owns the account and sweeps it.
    key_hash          integer NOT NULL,
    portal            text CHECK (portal IN ('schools', 'parent')),
    role              text,
    created_at        timestamptz,
    first_seen_at     timestamptz,
    last_login_at     timestamptz,
    last_activity_at  timestamptz,
    reactivated_at    timestamptz,
    -- The instant the dormancy clock runs from (monitor.accounts.model.idle_since).
    idle_since        timestamptz GENERATED ALWAYS AS (
                          GREATEST(last_login_at, created_at, reactivated_at,
                                   CASE WHEN last_login_at IS NULL AND created_at IS NULL
                                        THEN first_seen_at END)) STORED,
    status            text NOT NULL DEFAULT 'active'
                      CHECK (status IN ('active', 'dormant', 'disabled', 'revoked')),
    status_reason     text,
    status_at         timestamptz,
    -- The idle_since value an early warning was raised for (equal to idle_since: warned).
    warned_for        timestamptz,
    dormant_alert_id  text,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- The sweep: active accounts of a portal by idle time; and those not yet warned for their
-- current idle spell (warned ones leave this index, so a warning scan touches only the due).
CREATE INDEX accounts_due ON accounts (portal, idle_since) WHERE status = 'active';
CREATE INDEX accounts_unwarned ON accounts (portal, idle_since)
    WHERE status = 'active' AND warned_for IS DISTINCT FROM idle_since;
-- Listing by status, the disabled and revoked accounts lent to the shards, the dormant gauge.
CREATE INDEX accounts_status ON accounts (status, account_id) WHERE status <> 'active';
