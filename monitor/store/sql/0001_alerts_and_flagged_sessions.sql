-- Alerts (portal.alert/v1), idempotent on alert_id, and the sessions they flagged with the
-- items viewed in them: what incident responders query.

CREATE TABLE alerts (
    alert_id     text PRIMARY KEY,
    detector     text NOT NULL,
    severity     text NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    account_id   text NOT NULL,
    ts           timestamptz NOT NULL,
    detected_at  timestamptz NOT NULL,
    session_ids  text[] NOT NULL DEFAULT '{}',
    summary      text NOT NULL,
    evidence     jsonb NOT NULL DEFAULT '{}',
    policy       text NOT NULL,
    portal       text,
    status       text NOT NULL DEFAULT 'open'
);
CREATE INDEX alerts_ts ON alerts (ts DESC);
CREATE INDEX alerts_account_ts ON alerts (account_id, ts DESC);
CREATE INDEX alerts_detector_ts ON alerts (detector, ts DESC);

CREATE TABLE flagged_sessions (
    session_id     text PRIMARY KEY,
    account_id     text NOT NULL,
    opened_at      timestamptz NOT NULL,
    last_activity  timestamptz NOT NULL,
    closed_at      timestamptz,
    close_reason   text,
    ip             text,
    last_ip        text,
    network        text,
    user_agent     text,
    device_id      text,
    portal         text,
    login_seen     boolean NOT NULL DEFAULT true,
    page_views     integer NOT NULL DEFAULT 0,
    items_dropped  integer NOT NULL DEFAULT 0,
    alert_ids      text[] NOT NULL DEFAULT '{}',
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX flagged_sessions_account ON flagged_sessions (account_id, opened_at DESC);

CREATE TABLE session_items (
    session_id  text NOT NULL REFERENCES flagged_sessions (session_id) ON DELETE CASCADE,
    at          timestamptz NOT NULL,
    resource    text NOT NULL,
    action      text NOT NULL DEFAULT 'view',
    ip          text,
    PRIMARY KEY (session_id, at, resource, action)
);
