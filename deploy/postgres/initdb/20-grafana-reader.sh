#!/bin/sh
# Runs once, when the postgres container initialises an empty data directory.
# Creates the read-only role Grafana's "Flagged sessions" dashboard uses: it may read the
# tables the monitor creates (alerts, flagged_sessions, session_items, its checkpoints) and
# never write. To narrow it to the three dashboard tables, replace the default privilege by
# GRANT SELECT ON alerts, flagged_sessions, session_items after the monitor's first start.
set -eu
reader_password="$(cat /run/secrets/grafana_db_password)"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v reader_password="$reader_password" <<'SQL'
CREATE ROLE grafana_reader LOGIN PASSWORD :'reader_password';
GRANT CONNECT ON DATABASE portal_monitor TO grafana_reader;
GRANT USAGE ON SCHEMA public TO grafana_reader;
-- The monitor creates its tables on first start (after this script), as POSTGRES_USER.
ALTER DEFAULT PRIVILEGES FOR ROLE portal_monitor IN SCHEMA public
    GRANT SELECT ON TABLES TO grafana_reader;
SQL
