-- Alert delivery and incident response: the alert lifecycle (open, acknowledged, resolved with
-- a verdict; silenced ones kept apart), repeats grouped into the first alert, the outbox the
-- relays deliver from, silences, and the verdict totals behind the false-positive rate.

ALTER TABLE alerts
    ADD COLUMN verdict          text CHECK (verdict IN ('true_positive', 'false_positive')),
    ADD COLUMN acknowledged_at  timestamptz,
    ADD COLUMN acknowledged_by  text,
    ADD COLUMN resolved_at      timestamptz,
    ADD COLUMN resolved_by      text,
    ADD COLUMN repeat_count     integer NOT NULL DEFAULT 1,
    ADD COLUMN last_seen        timestamptz,
    ADD COLUMN silence_id       bigint,
    ADD COLUMN updated_at       timestamptz NOT NULL DEFAULT now();
ALTER TABLE alerts
    ADD CONSTRAINT alerts_status CHECK (status IN ('open', 'acknowledged', 'resolved', 'silenced')),
    ADD CONSTRAINT alerts_resolved_has_verdict CHECK (status <> 'resolved' OR verdict IS NOT NULL);
UPDATE alerts SET last_seen = ts WHERE last_seen IS NULL;
CREATE INDEX alerts_status_ts ON alerts (status, ts DESC);
CREATE INDEX alerts_resolved_at ON alerts (resolved_at) WHERE status = 'resolved';

-- What responders did, in order: acknowledge, resolve, notes.
CREATE TABLE alert_actions (
    alert_id  text NOT NULL REFERENCES alerts (alert_id) ON DELETE CASCADE,
    at        timestamptz NOT NULL DEFAULT now(),
    actor     text NOT NULL,
    action    text NOT NULL CHECK (action IN ('acknowledge', 'resolve')),
    verdict   text,
    note      text NOT NULL DEFAULT ''
);
CREATE INDEX alert_actions_alert ON alert_actions (alert_id, at);

-- Repeats of a (detector, account) within its cool-down: each is recorded once (its own
-- deterministic id), so a redelivered repeat never counts twice.
CREATE TABLE alert_repeats (
    repeat_id    text PRIMARY KEY,
    alert_id     text NOT NULL REFERENCES alerts (alert_id) ON DELETE CASCADE,
    ts           timestamptz NOT NULL,
    severity     text NOT NULL,
    session_ids  text[] NOT NULL DEFAULT '{}',
    summary      text NOT NULL
);
CREATE INDEX alert_repeats_alert ON alert_repeats (alert_id, ts);

-- One row per (external sink, alert), written in the transaction that stores the alert; the
-- sink's relay publishes it, then sets delivered_at. Rows stay as the delivery record.
CREATE TABLE alert_outbox (
    id               bigserial PRIMARY KEY,
    sink             text NOT NULL,
    alert_id         text NOT NULL REFERENCES alerts (alert_id) ON DELETE CASCADE,
    payload          jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    delivered_at     timestamptz,
    UNIQUE (sink, alert_id)
);
CREATE INDEX alert_outbox_due ON alert_outbox (sink, next_attempt_at, id) WHERE delivered_at IS NULL;
CREATE INDEX alert_outbox_alert ON alert_outbox (alert_id);

-- Silences: every non-null matcher must match; active for event times in [starts_at, expires_at).
CREATE TABLE silences (
    silence_id  bigserial PRIMARY KEY,
    account_id  text,
    detector    text,
    network     cidr,
    starts_at   timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    reason      text NOT NULL DEFAULT '',
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (account_id IS NOT NULL OR detector IS NOT NULL OR network IS NOT NULL),
    CHECK (expires_at > starts_at)
);
CREATE INDEX silences_expires ON silences (expires_at);

-- Verdicts ever given, per detector: survives the retention purge, so the counter exported
-- as portal_monitor_alert_verdicts_total never goes backwards.
CREATE TABLE alert_verdict_totals (
    detector  text NOT NULL,
    verdict   text NOT NULL CHECK (verdict IN ('true_positive', 'false_positive')),
    total     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (detector, verdict)
);
