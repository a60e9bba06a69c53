"""The account registry in PostgreSQL (table `accounts`, migration 0002): what `run`, `demo` and the CLI use.

Every write is one statement per batch, never per event or per row: a batch's activity is
one UPSERT over `unnest` arrays, its status changes and dormancy marks one UPDATE each, and
a roster goes in by COPY into a temporary table and one merging UPSERT. Times cross this
boundary as Unix seconds (`to_timestamp`, `extract(epoch ...)`).
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import msgspec

from monitor.accounts.memory import Counts, final_changes
from monitor.contract.accounts import Account, AccountActivity, DormancyMark, Restriction, StatusChange, key_hash
from monitor.accounts.roster import Rejections, RosterRow


def _epoch(column: str) -> str:
    return f"extract(epoch FROM {column})::float8 AS {column}"


ACCOUNT_COLUMNS = ", ".join(
    ["account_id", "key_hash", "portal", "role"]
    + [_epoch(c) for c in ("created_at", "first_seen_at", "last_login_at", "last_activity_at", "reactivated_at")]
    + ["status", "status_reason", _epoch("status_at"), _epoch("warned_for"), "dormant_alert_id"]
)

FETCH = f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE account_id = ANY($1::text[])"

# Mirrors monitor.accounts.memory.apply_activity.
UPSERT_ACTIVITY = """
INSERT INTO accounts AS a (account_id, key_hash, portal, first_seen_at, last_login_at, last_activity_at, created_at)
SELECT i.account_id, i.key_hash, i.portal, to_timestamp(i.first_at), to_timestamp(i.last_login_at),
       to_timestamp(i.last_activity_at), to_timestamp(i.created_at)
FROM unnest($1::text[], $2::integer[], $3::text[], $4::float8[], $5::float8[], $6::float8[], $7::float8[])
     AS i(account_id, key_hash, portal, first_at, last_login_at, last_activity_at, created_at)
ON CONFLICT (account_id) DO UPDATE SET
    status = CASE WHEN a.status = 'dormant' AND EXCLUDED.last_login_at > COALESCE(a.last_login_at, '-infinity')
                  THEN 'active' ELSE a.status END,
    status_at = CASE WHEN a.status = 'dormant' AND EXCLUDED.last_login_at > COALESCE(a.last_login_at, '-infinity')
                     THEN EXCLUDED.last_login_at ELSE a.status_at END,
    status_reason = CASE WHEN a.status = 'dormant' AND EXCLUDED.last_login_at > COALESCE(a.last_login_at, '-infinity')
                         THEN 'logged in again' ELSE a.status_reason END,
    portal = COALESCE(a.portal, EXCLUDED.portal),
    first_seen_at = LEAST(a.first_seen_at, EXCLUDED.first_seen_at),
    last_login_at = GREATEST(a.last_login_at, EXCLUDED.last_login_at),
    last_activity_at = GREATEST(a.last_activity_at, EXCLUDED.last_activity_at),
    created_at = GREATEST(a.created_at, EXCLUDED.created_at),
    updated_at = now()
"""

# Mirrors monitor.accounts.memory.apply_change.
APPLY_CHANGES = """
UPDATE accounts AS a SET
    status = CASE WHEN a.status_at IS NULL OR to_timestamp(c.at) >= a.status_at THEN c.status ELSE a.status END,
    status_reason = CASE WHEN a.status_at IS NULL OR to_timestamp(c.at) >= a.status_at
                         THEN c.reason ELSE a.status_reason END,
    status_at = CASE WHEN a.status_at IS NULL OR to_timestamp(c.at) >= a.status_at
                     THEN to_timestamp(c.at) ELSE a.status_at END,
    reactivated_at = GREATEST(a.reactivated_at, to_timestamp(c.reactivated)),
    updated_at = now()
FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::float8[]) AS c(account_id, status, reason, at, reactivated)
WHERE a.account_id = c.account_id
"""

# Mirror monitor.accounts.memory.apply_mark: only while the idle clock still runs from the
# same instant (a login recorded meanwhile wins).
MARK_WARNED = """
UPDATE accounts AS a SET warned_for = a.idle_since, updated_at = now()
FROM unnest($1::text[], $2::float8[]) AS m(account_id, idle)
WHERE a.account_id = m.account_id AND a.idle_since = to_timestamp(m.idle)
"""
MARK_DORMANT = """
UPDATE accounts AS a SET status = 'dormant', status_at = to_timestamp(m.at), status_reason = m.reason,
                         dormant_alert_id = m.alert_id, updated_at = now()
FROM unnest($1::text[], $2::float8[], $3::float8[], $4::text[], $5::text[]) AS m(account_id, idle, at, alert_id, reason)
WHERE a.account_id = m.account_id AND a.idle_since = to_timestamp(m.idle) AND a.status = 'active'
"""

DUE = """
SELECT {columns} FROM accounts
WHERE status = 'active' AND {portal} AND idle_since <= to_timestamp($1) AND idle_since > to_timestamp($2)
  AND key_hash % $3 = $4 {warned}
ORDER BY idle_since
LIMIT $5
"""
DUE_QUERIES = {
    (by_portal, warning): DUE.format(
        columns=ACCOUNT_COLUMNS,
        portal="portal = $6" if by_portal else "portal IS NULL",
        warned="AND warned_for IS DISTINCT FROM idle_since" if warning else "",
    )
    for by_portal in (True, False)
    for warning in (True, False)
}

COUNT = "SELECT count(*) FROM accounts WHERE status = $1 AND ($2::integer[] IS NULL OR key_hash % $3 = ANY($2))"

RESTRICTED = f"""
SELECT account_id, status, extract(epoch FROM status_at)::float8 AS since, status_reason,
       {_epoch("idle_since")}
FROM accounts WHERE status IN ('disabled', 'revoked')
"""

ROSTER_TABLE = """
CREATE TEMPORARY TABLE roster_import (
    line integer, account_id text, key_hash integer, portal text, role text,
    created_at float8, last_login_at float8, status text, reason text
) ON COMMIT DROP
"""
ROSTER_COLUMNS = ["line", "account_id", "key_hash", "portal", "role", "created_at", "last_login_at", "status", "reason"]
ROSTER_DUPLICATES = """
SELECT r.line, r.account_id, d.last FROM roster_import r
JOIN (SELECT account_id, max(line) AS last FROM roster_import GROUP BY account_id HAVING count(*) > 1) d
  USING (account_id)
WHERE r.line < d.last
ORDER BY r.line
"""
# Mirrors monitor.accounts.memory.apply_roster_row; rows that would not change are not written.
IMPORT_ROSTER = """
WITH incoming AS (
    SELECT DISTINCT ON (account_id) * FROM roster_import ORDER BY account_id, line DESC
), merged AS (
    SELECT i.account_id, i.key_hash,
           COALESCE(i.portal, a.portal) AS portal,
           COALESCE(i.role, a.role) AS role,
           COALESCE(to_timestamp(i.created_at), a.created_at) AS created_at,
           CASE WHEN a.account_id IS NULL AND i.created_at IS NULL AND i.last_login_at IS NULL
                THEN to_timestamp($1) ELSE a.first_seen_at END AS first_seen_at,
           GREATEST(a.last_login_at, to_timestamp(i.last_login_at)) AS last_login_at,
           CASE WHEN i.status = 'active' AND a.status = 'dormant' THEN 'dormant' ELSE i.status END AS status,
           a.status AS old_status, a.status_reason AS old_reason, a.status_at AS old_status_at, i.reason
    FROM incoming i LEFT JOIN accounts a USING (account_id)
), final AS (
    SELECT account_id, key_hash, portal, role, created_at, first_seen_at, last_login_at, status,
           CASE WHEN status = old_status THEN COALESCE(reason, old_reason)
                WHEN status = 'active' THEN reason
                ELSE COALESCE(reason, 'roster import') END AS status_reason,
           CASE WHEN status IS NOT DISTINCT FROM old_status THEN old_status_at ELSE to_timestamp($1) END AS status_at
    FROM merged
), written AS (
    INSERT INTO accounts AS a (account_id, key_hash, portal, role, created_at, first_seen_at, last_login_at,
                               status, status_reason, status_at)
    SELECT * FROM final
    ON CONFLICT (account_id) DO UPDATE SET
        key_hash = EXCLUDED.key_hash, portal = EXCLUDED.portal, role = EXCLUDED.role,
        created_at = EXCLUDED.created_at, first_seen_at = EXCLUDED.first_seen_at,
        last_login_at = EXCLUDED.last_login_at, status = EXCLUDED.status,
        status_reason = EXCLUDED.status_reason, status_at = EXCLUDED.status_at, updated_at = now()
    WHERE (a.key_hash, a.portal, a.role, a.created_at, a.first_seen_at, a.last_login_at, a.status,
           a.status_reason, a.status_at)
          IS DISTINCT FROM
          (EXCLUDED.key_hash, EXCLUDED.portal, EXCLUDED.role, EXCLUDED.created_at, EXCLUDED.first_seen_at,
           EXCLUDED.last_login_at, EXCLUDED.status, EXCLUDED.status_reason, EXCLUDED.status_at)
    RETURNING (xmax = 0) AS inserted
)
SELECT (SELECT count(*) FROM incoming) AS total,
       count(*) FILTER (WHERE inserted) AS new,
       count(*) FILTER (WHERE NOT inserted) AS updated
FROM written
"""

LIST = f"""
SELECT {ACCOUNT_COLUMNS} FROM accounts
WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR portal = $2)
ORDER BY status, idle_since NULLS LAST, account_id
LIMIT $3
"""
RECENT_ALERTS = """
SELECT alert_id, detector, severity, ts, summary FROM alerts WHERE account_id = $1 ORDER BY ts DESC LIMIT $2
"""


def _account(row) -> Account:
    return Account(**dict(row))


class PostgresRegistry:
    """The registry on an asyncpg pool (set at start by the composition root)."""

    def __init__(self, pool=None) -> None:
        self.pool = pool

    async def fetch(self, account_ids: Sequence[str]) -> dict[str, Account]:
        if not account_ids:
            return {}
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(FETCH, list(account_ids))
        return {row["account_id"]: _account(row) for row in rows}

    async def record(
        self,
        activity: Mapping[str, AccountActivity],
        changes: Sequence[StatusChange],
        marks: Sequence[DormancyMark],
    ) -> int:
        known = [(account_id, a) for account_id, a in activity.items() if a.known]
        if not (known or changes or marks):
            return 0
        went_dormant = 0
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                if known:
                    await conn.execute(
                        UPSERT_ACTIVITY,
                        [account_id for account_id, _ in known],
                        [key_hash(account_id) for account_id, _ in known],
                        [a.portal for _, a in known],
                        [a.first_at for _, a in known],
                        [a.last_login_at for _, a in known],
                        [a.last_activity_at for _, a in known],
                        [a.created_at for _, a in known],
                    )
                if changes:
                    final = final_changes(changes)
                    await conn.execute(
                        APPLY_CHANGES,
                        list(final),
                        [c[0] for c in final.values()],
                        [c[1] for c in final.values()],
                        [c[2] for c in final.values()],
                        [c[3] for c in final.values()],
                    )
                warned = [m for m in marks if m.stage == "warned"]
                if warned:
                    await conn.execute(MARK_WARNED, [m.account_id for m in warned], [m.idle_since for m in warned])
                dormant = [m for m in marks if m.stage == "dormant"]
                if dormant:
                    status = await conn.execute(
                        MARK_DORMANT,
                        [m.account_id for m in dormant],
                        [m.idle_since for m in dormant],
                        [m.at for m in dormant],
                        [m.alert_id for m in dormant],
                        [m.reason for m in dormant],
                    )
                    went_dormant = int(status.rsplit(" ", 1)[-1])
        return went_dormant

    async def due(
        self,
        *,
        portal: str | None,
        idle_after: float,
        idle_before: float,
        warning: bool,
        partition: int,
        partitions: int,
        limit: int,
    ) -> list[Account]:
        query = DUE_QUERIES[(portal is not None, warning)]
        args: list = [idle_before, idle_after, max(partitions, 1), partition, limit]
        if portal is not None:
            args.append(portal)
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(query, *args)
        return [_account(row) for row in rows]

    async def restricted(self) -> dict[str, Restriction]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(RESTRICTED)
        return {
            row["account_id"]: Restriction(row["status"], row["since"] or 0.0, row["status_reason"], row["idle_since"])
            for row in rows
        }

    async def count(self, status: str, partitions: Sequence[int] | None = None, total: int = 1) -> int:
        async with self.pool.acquire() as conn:
            return await conn.fetchval(COUNT, status, None if partitions is None else list(partitions), max(total, 1))

    async def import_roster(self, rows: Iterable[RosterRow], rejections: Rejections, now: float) -> Counts:
        """COPY the rows into a temporary table, report duplicates, merge them in with one UPSERT."""
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                await conn.execute(ROSTER_TABLE)
                await conn.copy_records_to_table(
                    "roster_import", records=(msgspec.structs.astuple(row) for row in rows), columns=ROSTER_COLUMNS
                )
                for line, account_id, last in await conn.fetch(ROSTER_DUPLICATES):
                    rejections.add(line, "duplicate", f"account_id {account_id!r} again on line {last}, which is used")
                result = await conn.fetchrow(IMPORT_ROSTER, now)
        total, new, updated = result["total"], result["new"], result["updated"]
        return Counts(new=new, updated=updated, unchanged=total - new - updated)

    # -- for the CLI -------------------------------------------------------------------------

    async def get(self, account_id: str) -> Account | None:
        found = await self.fetch([account_id])
        return found.get(account_id)

    async def list(self, status: str | None, portal: str | None, limit: int) -> list[Account]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(LIST, status, portal, limit)
        return [_account(row) for row in rows]

    async def recent_alerts(self, account_id: str, limit: int = 10) -> list[dict]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(RECENT_ALERTS, account_id, limit)
        return [dict(row) for row in rows]
