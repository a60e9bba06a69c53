#!/bin/sh
# Create the compose stack's secrets (random) unless they exist.
# Compose bind-mounts each file into the containers, where the services run as their own
# users (postgres, grafana, uid 10001), so the files are world-readable and the folder is
# closed to other users of this host instead.
set -eu
cd "$(dirname "$0")"
chmod 700 .
for name in postgres_password grafana_db_password grafana_admin_password; do
  if [ ! -s "$name" ]; then
    python3 -c 'import secrets; print(secrets.token_urlsafe(24), end="")' > "$name"
    chmod 644 "$name"
  fi
done
echo "secrets in $(pwd): postgres_password grafana_db_password grafana_admin_password"
