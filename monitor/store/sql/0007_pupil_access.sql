-- Who viewed a pupil's record (docs/pupils.md): one row per pupil, UTC day and account, with
-- counts by action, the first and last time, and up to 4 addresses. Written by the PostgreSQL
-- sink from each batch's findings ([pupils] access_log), purged by day after
-- [pupils] access_keep_for (400 days). The primary key serves "pupil X between two dates".
CREATE TABLE IF NOT EXISTS pupil_access (
    pupil_id   text NOT NULL,
    day        date NOT NULL,
    account_id text NOT NULL,
    views      integer NOT NULL DEFAULT 0,
    downloads  integer NOT NULL DEFAULT 0,
    prints     integer NOT NULL DEFAULT 0,
    exports    integer NOT NULL DEFAULT 0,
    first_at   timestamptz NOT NULL,
    last_at    timestamptz NOT NULL,
    addresses  inet[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (pupil_id, day, account_id)
);

CREATE INDEX IF NOT EXISTS pupil_access_day ON pupil_access (day);
