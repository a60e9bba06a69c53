"""PostgreSQL sink: alerts (idempotent on alert_id) and flagged sessions with their timeline.

One transaction per batch: the alerts, the flagged sessions (upserted: a session flagged again
or closed later is updated, its alert ids merged) and the items viewed in them, and the batch's
access log of pupils' records (added into `pupil_access`: one row per pupil, day and account).
A redelivered batch changes nothing, except that the access log's counts may count a
redelivered view twice (its first/last times and addresses do not move).

It is also the durable point of delivery: in the same transaction, one outbox row per alert
and external sink that wants it (by minimum severity), which that sink's relay
(`monitor.delivery.outbox`) publishes; repeats grouped by the alert gate (recorded once each, the first
alert's count and last-seen updated); silenced alerts (stored with status `silenced`, no outbox
row). The pipeline commits Kafka offsets only after this transaction.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Callable, Sequence

import msgspec

from monitor.contract.alerts import SEVERITY_RANK, utc
from monitor.contract.events import PortalEvent
from monitor.engine.findings import Findings
from sinks.base import at_least
from monitor.contract.settings import Section
from monitor.contract.alerts import Severity

INSERT_ALERT = """
INSERT INTO alerts (alert_id, detector, severity, account_id, ts, detected_at, session_ids,
                    summary, evidence, policy, portal, status, silence_id, last_seen, source)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11, $12, $13, $5, $14)
ON CONFLICT (alert_id) DO NOTHING
"""

INSERT_OUTBOX = """
INSERT INTO alert_outbox (sink, alert_id, payload)
VALUES ($1, $2, $3::jsonb)
ON CONFLICT (sink, alert_id) DO NOTHING
"""

INSERT_REPEAT = """
INSERT INTO alert_repeats (repeat_id, alert_id, ts, severity, session_ids, summary)
SELECT $1, $2, $3, $4, $5, $6
WHERE EXISTS (SELECT 1 FROM alerts WHERE alert_id = $2)
ON CONFLICT (repeat_id) DO NOTHING
"""

COUNT_REPEATS = """
UPDATE alerts a SET
    repeat_count = 1 + r.n,
    last_seen = GREATEST(a.ts, r.last_ts),
    updated_at = now()
FROM (SELECT alert_id, count(*) AS n, max(ts) AS last_ts FROM alert_repeats
      WHERE alert_id = ANY($1::text[]) GROUP BY alert_id) r
WHERE a.alert_id = r.alert_id
"""

UPSERT_SESSION = """
INSERT INTO flagged_sessions (session_id, account_id, opened_at, last_activity, closed_at,
    close_reason, ip, last_ip, network, user_agent, device_id, portal, login_seen, page_views,
    items_dropped, alert_ids)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
ON CONFLICT (session_id) DO UPDATE SET
    last_activity = GREATEST(flagged_sessions.last_activity, EXCLUDED.last_activity),
    closed_at = COALESCE(EXCLUDED.closed_at, flagged_sessions.closed_at),
    close_reason = COALESCE(EXCLUDED.close_reason, flagged_sessions.close_reason),
    last_ip = EXCLUDED.last_ip,
    page_views = GREATEST(flagged_sessions.page_views, EXCLUDED.page_views),
    items_dropped = GREATEST(flagged_sessions.items_dropped, EXCLUDED.items_dropped),
    alert_ids = ARRAY(SELECT DISTINCT unnest(flagged_sessions.alert_ids || EXCLUDED.alert_ids)),
    updated_at = now()
"""

INSERT_ITEM = """
INSERT INTO session_items (session_id, at, resource, action, ip)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT DO NOTHING
"""


# A batch's access log in one statement: the batch's views of pupils' records in (arrays,
# transposed in C), one row per (pupil, day, account) out, folded here by PostgreSQL: counts
# by action, the first and last time, the first 4 distinct addresses in the order they were
# seen; then added into the row already there (its addresses first, still 4 at most).
UPSERT_PUPIL_ACCESS = """
WITH views AS (
    SELECT pupil_id, account_id, at, action, ip::inet AS ip, n,
           date '1970-01-01' + floor(at / 86400)::int AS day
    FROM unnest($1::text[], $2::text[], $3::float8[], $4::text[], $5::text[])
         WITH ORDINALITY AS v(pupil_id, account_id, at, action, ip, n)
), seen AS (
    SELECT pupil_id, day, account_id, array_agg(ip ORDER BY first) AS addresses
    FROM (SELECT pupil_id, day, account_id, ip, min(n) AS first,
                 row_number() OVER (PARTITION BY pupil_id, day, account_id ORDER BY min(n)) AS rank
          FROM views WHERE ip IS NOT NULL
          GROUP BY pupil_id, day, account_id, ip) AS distinct_addresses
    WHERE rank <= 4
    GROUP BY pupil_id, day, account_id
), folded AS (
    SELECT pupil_id, day, account_id,
           count(*) FILTER (WHERE action = 'view') AS views,
           count(*) FILTER (WHERE action = 'download') AS downloads,
           count(*) FILTER (WHERE action = 'print') AS prints,
           count(*) FILTER (WHERE action = 'export') AS exports,
           min(at) AS first_at, max(at) AS last_at
    FROM views
    GROUP BY pupil_id, day, account_id
)
INSERT INTO pupil_access AS p (pupil_id, day, account_id, views, downloads, prints, exports,
                               first_at, last_at, addresses)
SELECT f.pupil_id, f.day, f.account_id, f.views, f.downloads, f.prints, f.exports,
       to_timestamp(f.first_at), to_timestamp(f.last_at), s.addresses
FROM folded AS f LEFT JOIN seen AS s USING (pupil_id, day, account_id)
ON CONFLICT (pupil_id, day, account_id) DO UPDATE SET
    views = p.views + EXCLUDED.views,
    downloads = p.downloads + EXCLUDED.downloads,
    prints = p.prints + EXCLUDED.prints,
    exports = p.exports + EXCLUDED.exports,
    first_at = LEAST(p.first_at, EXCLUDED.first_at),
    last_at = GREATEST(p.last_at, EXCLUDED.last_at),
    addresses = CASE WHEN cardinality(p.addresses) >= 4 THEN p.addresses
                     ELSE ARRAY(SELECT u.a FROM unnest(p.addresses || EXCLUDED.addresses) WITH ORDINALITY AS u(a, n)
                                GROUP BY u.a ORDER BY min(u.n) LIMIT 4) END
"""

_VIEW = attrgetter("pupil_id", "account_id", "at", "action", "ip")


def pupil_access_columns(views: Sequence[PortalEvent]) -> list[Sequence]:
    """`Findings.pupil_access` (the batch's views of pupils' records) as the five column arrays
    of UPSERT_PUPIL_ACCESS: pupil ids, account ids, times (epoch seconds), actions, addresses.
    Transposed by `zip` in C, no Python code per view."""
    if not views:
        return [[] for _ in range(5)]
    return list(zip(*map(_VIEW, views)))


class PostgresSink:
    """Writes findings to the store in one transaction per batch.

    `outbox` names the external sinks and their minimum severity; `on_outbox()` is called
    after a transaction that added outbox rows (it wakes the relays).
    """

    def __init__(
        self,
        pool,
        min_severity: str = "low",
        name: str = "postgres",
        outbox: Sequence[tuple[str, str]] = (),
        on_outbox: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.pool = pool
        self.min_severity = min_severity
        self.outbox = [(sink, SEVERITY_RANK[severity]) for sink, severity in outbox]
        self.on_outbox = on_outbox
        self._json = msgspec.json.Encoder()

    async def start(self) -> None:
        pass

    async def write(self, findings: Findings) -> None:
        alerts = at_least(findings.alerts, self.min_severity)
        repeats = getattr(findings, "repeats", ())
        silenced = getattr(findings, "silenced", ())
        access = findings.pupil_access
        if not (alerts or findings.flagged_sessions or findings.viewed_items or repeats or silenced or access):
            return
        encode = self._json.encode
        alert_rows = [
            (a.alert_id, a.detector, a.severity, a.account_id, a.ts, a.detected_at, a.session_ids,
             a.summary, encode(a.evidence).decode(), a.policy, a.portal, "open", None, a.source)
            for a in alerts
        ]
        alert_rows.extend(
            (a.alert_id, a.detector, a.severity, a.account_id, a.ts, a.detected_at, a.session_ids,
             a.summary, encode(a.evidence).decode(), a.policy, a.portal, "silenced", silence_id, a.source)
            for a, silence_id in silenced
        )
        outbox_rows = []
        for a in alerts:
            rank = SEVERITY_RANK[a.severity]
            wanted = [sink for sink, floor in self.outbox if rank >= floor]
            if wanted:
                payload = encode(a).decode()
                outbox_rows.extend((sink, a.alert_id, payload) for sink in wanted)
        repeat_rows = [
            (r.repeat_id, r.alert_id, r.ts, r.severity, r.session_ids, r.summary) for r in repeats
        ]
        session_rows = []
        item_rows = []
        for flagged in findings.flagged_sessions.values():
            s = flagged.session
            session_rows.append(
                (s.session_id, s.account_id, utc(s.opened_at), utc(s.last_activity),
                 utc(s.closed_at) if s.closed_at is not None else None, s.close_reason, s.ip,
                 s.last_ip, s.network, s.user_agent, s.device_id, s.portal, s.login_seen,
                 s.page_views, s.items_dropped, flagged.alert_ids)
            )
            item_rows.extend((s.session_id, utc(i.at), i.resource, i.action, None) for i in s.items)
        item_rows.extend(
            (v.session_id, utc(v.at), v.resource, v.action, v.ip) for v in findings.viewed_items
        )
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                if alert_rows:
                    await conn.executemany(INSERT_ALERT, alert_rows)
                if outbox_rows:
                    await conn.executemany(INSERT_OUTBOX, outbox_rows)
                if repeat_rows:
                    await conn.executemany(INSERT_REPEAT, repeat_rows)
                    await conn.execute(COUNT_REPEATS, list({r.alert_id for r in repeats}))
                if session_rows:
                    await conn.executemany(UPSERT_SESSION, session_rows)
                if item_rows:
                    await conn.executemany(INSERT_ITEM, item_rows)
                if access:
                    await conn.execute(UPSERT_PUPIL_ACCESS, *pupil_access_columns(access))
        if outbox_rows and self.on_outbox is not None:
            self.on_outbox()

    async def close(self) -> None:
        pass


class PostgresSinkSettings(Section):
    enabled: bool = True
    min_severity: Severity = "low"
