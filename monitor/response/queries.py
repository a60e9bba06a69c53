"""What incident responders ask the store, shared by the CLI and the HTTP API.

Alerts (list, show, acknowledge, resolve with a verdict), flagged sessions with the timeline of
what was viewed, and silences. Every query is parameterised: filter values are data, never
SQL. Functions take an asyncpg connection or pool and return plain data (dicts, lists).
"""

from __future__ import annotations

import ipaddress
import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from monitor.contract.alerts import SEVERITIES

STATUSES = ("open", "acknowledged", "resolved", "silenced")
VERDICTS = ("true_positive", "false_positive", "benign")
"""benign: the alert read the events right, but what happened is allowed (e.g. a known shared device)."""
PORTALS = ("schools", "parent")
MIN_PREFIX = 6
CLOSE_EVENTS = {
    "logout": "logout",
    "session_expired": "expired (by the portal)",
    "idle_timeout": "expired (idle timeout)",
    "max_duration": "expired (maximum duration)",
}


class NotFound(LookupError):
    """No alert, session or silence with that id."""


class Conflict(Exception):
    """The request does not fit the alert's state (e.g. acknowledging a resolved alert)."""


# -- parsing of filter values (CLI arguments and query strings alike) -------------------------

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str | None, now: datetime | None = None) -> datetime | None:
    """RFC 3339 (`2026-03-02T08:00:00Z`), a date (`2026-03-02`, UTC) or an age (`24h`, `7d`) ago."""
    if text is None or text == "":
        return None
    now = now or datetime.now(timezone.utc)
    shown = text[:64]
    match = _DURATION.match(text.strip())
    if match:
        try:
            return now - timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
        except (OverflowError, ValueError):
            raise ValueError(f"not a time: {shown!r} is further back than the calendar goes") from None
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        value = value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)
        value.timestamp()  # the store's range: year 1 to 9999 in UTC
    except (OverflowError, ValueError):
        raise ValueError(f"not a time: {shown!r} (write e.g. 2026-03-02T08:00:00Z, 2026-03-02 or 24h)") from None
    return value


def parse_expiry(text: str | None, now: datetime | None = None) -> datetime | None:
    """When a silence ends: a time or date as `parse_time`, or a duration (`2h`, `7d`) from now."""
    now = now or datetime.now(timezone.utc)
    seconds = parse_duration(text or "")
    if seconds is None:
        return parse_time(text, now)
    try:
        return now + timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"expires: {text!r} is too far ahead (the latest is year 9999)") from None


def parse_duration(text: str) -> float | None:
    """Seconds in an age such as `90s`, `15m`, `24h`, `7d`; None if `text` is not one."""
    match = _DURATION.match(text.strip())
    if not match:
        return None
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds != seconds or seconds == float("inf"):
        raise ValueError(f"not a duration: {text!r}")
    return seconds


def check_choice(name: str, value: str | None, choices: tuple[str, ...]) -> str | None:
    if value is None or value == "":
        return None
    if value not in choices:
        raise ValueError(f"{name}: {value!r} is not one of {', '.join(choices)}")
    return value


def check_limit(value: Any, maximum: int = 1000, default: int = 100) -> int:
    if value is None or value == "":
        return default
    try:
        limit = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"limit: not a number: {value!r}") from None
    if not 1 <= limit <= maximum:
        raise ValueError(f"limit: must be between 1 and {maximum}")
    return limit


# -- alerts ------------------------------------------------------------------------------------

ALERT_COLUMNS = """alert_id, ts, detector, severity, account_id, source, portal, status, verdict, repeat_count,
    last_seen, summary"""


async def list_alerts(
    db,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    detector: str | None = None,
    severity: str | None = None,
    account: str | None = None,
    status: str | None = None,
    portal: str | None = None,
    limit: int = 100,
    offset: int = 0,
    source: str | None = None,
) -> list[dict]:
    """Alerts, newest first; each filter given narrows the list. `portal`: the portal the
    events came from (schools or parent); `offset` skips that many (paging). `source`: an
    address or a network (CIDR); alerts about a source (password_spray) within it or containing it."""
    check_choice("severity", severity, SEVERITIES)
    check_choice("status", status, STATUSES)
    check_choice("portal", portal, PORTALS)
    if offset < 0:
        raise ValueError("offset: must not be negative")
    if source:
        check_source(source)
    rows = await db.fetch(
        f"""SELECT {ALERT_COLUMNS} FROM alerts
            WHERE ($1::timestamptz IS NULL OR ts >= $1)
              AND ($2::timestamptz IS NULL OR ts < $2)
              AND ($3::text IS NULL OR detector = $3)
              AND ($4::text IS NULL OR severity = $4)
              AND ($5::text IS NULL OR account_id = $5)
              AND ($6::text IS NULL OR status = $6)
              AND ($8::text IS NULL OR portal = $8)
              AND ($10::text IS NULL OR (source IS NOT NULL AND source::inet && $10::inet))
            ORDER BY ts DESC, alert_id
            LIMIT $7 OFFSET $9""",
        since, until, detector or None, severity or None, account or None, status or None, limit,
        portal or None, offset, source or None,
    )
    return [dict(row) for row in rows]


def check_source(source: str) -> None:
    """A source filter must be an IP address or a network in CIDR notation."""
    import ipaddress

    try:
        ipaddress.ip_network(source, strict=False)
    except ValueError:
        raise ValueError(f"source: not an IP address or network: {source!r}") from None


async def resolve_alert_id(db, alert_id: str) -> str:
    """The full id of an alert given its id or a unique prefix of at least 6 characters."""
    if await db.fetchval("SELECT 1 FROM alerts WHERE alert_id = $1", alert_id):
        return alert_id
    if len(alert_id) >= MIN_PREFIX:
        found = await db.fetch(
            "SELECT alert_id FROM alerts WHERE left(alert_id, $2) = $1 LIMIT 2", alert_id, len(alert_id)
        )
        if len(found) == 1:
            return found[0]["alert_id"]
        if len(found) > 1:
            raise NotFound(f"alert id prefix {alert_id!r} is ambiguous; give more characters")
    raise NotFound(f"no alert {alert_id!r}")


async def get_alert(db, alert_id: str) -> dict:
    """One alert in full: evidence, policy, lifecycle, responder actions, repeats, deliveries."""
    alert_id = await resolve_alert_id(db, alert_id)
    row = await db.fetchrow(
        """SELECT alert_id, ts, detected_at, detector, severity, account_id, source, portal, session_ids,
                  summary, evidence::text AS evidence, policy, status, verdict, repeat_count,
                  last_seen, silence_id, acknowledged_at, acknowledged_by, resolved_at, resolved_by
           FROM alerts WHERE alert_id = $1""",
        alert_id,
    )
    alert = dict(row)
    alert["evidence"] = json.loads(alert["evidence"])
    alert["actions"] = [
        dict(r)
        for r in await db.fetch(
            "SELECT at, actor, action, verdict, note FROM alert_actions WHERE alert_id = $1 ORDER BY at",
            alert_id,
        )
    ]
    alert["repeats"] = [
        dict(r)
        for r in await db.fetch(
            "SELECT repeat_id, ts, severity, session_ids, summary FROM alert_repeats WHERE alert_id = $1 ORDER BY ts",
            alert_id,
        )
    ]
    alert["deliveries"] = [
        dict(r)
        for r in await db.fetch(
            """SELECT sink, attempts, created_at, delivered_at, last_error FROM alert_outbox
               WHERE alert_id = $1 ORDER BY sink""",
            alert_id,
        )
    ]
    return alert


async def acknowledge(db, alert_id: str, actor: str, note: str = "") -> dict:
    """Mark an open alert acknowledged (again: adds the note). Conflict if resolved."""
    async with _transaction(db) as conn:
        alert_id = await resolve_alert_id(conn, alert_id)
        status = await conn.fetchval("SELECT status FROM alerts WHERE alert_id = $1 FOR UPDATE", alert_id)
        if status not in ("open", "acknowledged"):
            raise Conflict(f"alert {alert_id} is {status}; only open alerts can be acknowledged")
        await conn.execute(
            """UPDATE alerts SET status = 'acknowledged', acknowledged_at = COALESCE(acknowledged_at, now()),
                   acknowledged_by = COALESCE(acknowledged_by, $2), updated_at = now()
               WHERE alert_id = $1""",
            alert_id, actor,
        )
        await conn.execute(
            "INSERT INTO alert_actions (alert_id, actor, action, note) VALUES ($1, $2, 'acknowledge', $3)",
            alert_id, actor, note,
        )
    return await get_alert(db, alert_id)


async def resolve(db, alert_id: str, actor: str, verdict: str, note: str = "") -> dict:
    """Resolve an alert with a verdict (true_positive, false_positive or benign), counted per detector."""
    if check_choice("verdict", verdict, VERDICTS) is None:
        raise ValueError(f"verdict: give {', '.join(VERDICTS)}")
    async with _transaction(db) as conn:
        alert_id = await resolve_alert_id(conn, alert_id)
        row = await conn.fetchrow("SELECT status, detector FROM alerts WHERE alert_id = $1 FOR UPDATE", alert_id)
        if row["status"] == "resolved":
            raise Conflict(f"alert {alert_id} is already resolved")
        await conn.execute(
            """UPDATE alerts SET status = 'resolved', verdict = $2, resolved_at = now(), resolved_by = $3,
                   updated_at = now()
               WHERE alert_id = $1""",
            alert_id, verdict, actor,
        )
        await conn.execute(
            "INSERT INTO alert_actions (alert_id, actor, action, verdict, note) VALUES ($1, $2, 'resolve', $3, $4)",
            alert_id, actor, verdict, note,
        )
        await conn.execute(
            """INSERT INTO alert_verdict_totals (detector, verdict, total) VALUES ($1, $2, 1)
               ON CONFLICT (detector, verdict) DO UPDATE SET total = alert_verdict_totals.total + 1""",
            row["detector"], verdict,
        )
    return await get_alert(db, alert_id)


async def verdict_totals(db) -> dict[tuple[str, str], int]:
    rows = await db.fetch("SELECT detector, verdict, total FROM alert_verdict_totals")
    return {(r["detector"], r["verdict"]): r["total"] for r in rows}


async def alert_counts(db, *, days: int = 14) -> dict:
    """What the overview shows: alerts per day, detector and severity over the `days` days up
    to the newest alert (a replay's alerts are in the past), and alerts per status."""
    newest = await db.fetchval("SELECT max(ts) FROM alerts")
    if newest is None:
        return {"newest": None, "since": None, "by_day": [], "by_status": {}}
    since = (newest - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    by_day = await db.fetch(
        """SELECT (ts AT TIME ZONE 'UTC')::date AS day, detector, severity, count(*) AS alerts
           FROM alerts WHERE ts >= $1 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3""",
        since,
    )
    by_status = await db.fetch("SELECT status, count(*) AS alerts FROM alerts GROUP BY status")
    return {
        "newest": newest,
        "since": since,
        "by_day": [dict(r) for r in by_day],
        "by_status": {r["status"]: r["alerts"] for r in by_status},
    }


# -- accounts ------------------------------------------------------------------------------------


async def get_account(db, account_id: str) -> dict | None:
    """The registry's row for an account (status, last login, idle clock), or None if unknown."""
    row = await db.fetchrow(
        """SELECT account_id, portal, role, created_at, first_seen_at, last_login_at, last_activity_at,
                  idle_since, status, status_reason, status_at
           FROM accounts WHERE account_id = $1""",
        account_id,
    )
    return dict(row) if row is not None else None


# -- flagged sessions ----------------------------------------------------------------------------

SESSION_COLUMNS = """session_id, account_id, portal, opened_at, last_activity, closed_at, close_reason,
    ip, last_ip, page_views, alert_ids"""


async def list_sessions(
    db,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    account: str | None = None,
    alert_id: str | None = None,
    limit: int = 100,
) -> list[dict]:
    """Flagged sessions (the store keeps no others), most recent first."""
    rows = await db.fetch(
        f"""SELECT {SESSION_COLUMNS} FROM flagged_sessions
            WHERE ($1::timestamptz IS NULL OR last_activity >= $1)
              AND ($2::timestamptz IS NULL OR opened_at < $2)
              AND ($3::text IS NULL OR account_id = $3)
              AND ($4::text IS NULL OR $4 = ANY(alert_ids))
            ORDER BY opened_at DESC, session_id
            LIMIT $5""",
        since, until, account or None, alert_id or None, limit,
    )
    return [dict(row) for row in rows]


async def resolve_session_id(db, session_id: str) -> str:
    """The full id of a flagged session given its id or a unique prefix of at least 6 characters."""
    if await db.fetchval("SELECT 1 FROM flagged_sessions WHERE session_id = $1", session_id):
        return session_id
    if len(session_id) >= MIN_PREFIX:
        found = await db.fetch(
            "SELECT session_id FROM flagged_sessions WHERE left(session_id, $2) = $1 ORDER BY session_id LIMIT 2",
            session_id, len(session_id),
        )
        if len(found) == 1:
            return found[0]["session_id"]
        if len(found) > 1:
            raise NotFound(
                f"session id prefix {session_id!r} is ambiguous ({found[0]['session_id']}, "
                f"{found[1]['session_id']}, ...); give more characters"
            )
    raise NotFound(f"no flagged session {session_id!r}")


async def get_session(db, session_id: str) -> dict:
    """A flagged session and its timeline: login, each item viewed with its time, logout or expiry."""
    session_id = await resolve_session_id(db, session_id)
    row = await db.fetchrow(
        f"""SELECT {SESSION_COLUMNS}, network, user_agent, device_id, login_seen, items_dropped
            FROM flagged_sessions WHERE session_id = $1""",
        session_id,
    )
    if row is None:
        raise NotFound(f"no flagged session {session_id!r}")
    session = dict(row)
    timeline: list[dict] = [
        {
            "at": session["opened_at"],
            "event": "login" if session["login_seen"] else "first seen (login not in the log)",
            "resource": None,
            "ip": session["ip"],
            "detail": session["user_agent"],
        }
    ]
    if session["items_dropped"]:
        timeline.append(
            {"at": session["opened_at"], "event": "earlier items not kept", "resource": None, "ip": None,
             "detail": f"{session['items_dropped']} item(s) viewed before the flag were over the per-session limit"}
        )
    for item in await db.fetch(
        "SELECT at, resource, action, ip FROM session_items WHERE session_id = $1 ORDER BY at, resource", session_id
    ):
        timeline.append(
            {"at": item["at"], "event": item["action"], "resource": item["resource"], "ip": item["ip"], "detail": None}
        )
    if session["closed_at"] is not None:
        timeline.append(
            {"at": session["closed_at"], "event": CLOSE_EVENTS.get(session["close_reason"], session["close_reason"]),
             "resource": None, "ip": None, "detail": None}
        )
    session["timeline"] = timeline
    session["alerts"] = [
        dict(r)
        for r in await db.fetch(
            "SELECT alert_id, ts, detector, severity, status, summary FROM alerts WHERE alert_id = ANY($1::text[]) ORDER BY ts",
            list(session["alert_ids"]),
        )
    ]
    return session


# -- silences --------------------------------------------------------------------------------------


async def add_silence(
    db,
    *,
    actor: str,
    expires: datetime,
    starts: datetime | None = None,
    account_id: str | None = None,
    detector: str | None = None,
    network: str | None = None,
    reason: str = "",
) -> dict:
    if not (account_id or detector or network):
        raise ValueError("a silence names an account, a detector or a network")
    if network:
        try:
            network = str(ipaddress.ip_network(network, strict=False))
        except ValueError:
            raise ValueError(f"network: not a CIDR: {network!r}") from None
    starts = starts or datetime.now(timezone.utc)
    if expires <= starts:
        raise ValueError("expires: must be after the start")
    row = await db.fetchrow(
        """INSERT INTO silences (account_id, detector, network, starts_at, expires_at, reason, created_by)
           VALUES ($1, $2, $3::cidr, $4, $5, $6, $7)
           RETURNING silence_id, account_id, detector, network::text AS network, starts_at, expires_at,
                     reason, created_by, created_at""",
        account_id or None, detector or None, network or None, starts, expires, reason, actor,
    )
    return dict(row)


async def list_silences(db, *, include_expired: bool = False, account: str | None = None) -> list[dict]:
    """Silences, soonest to expire first; `account`: only those naming that account."""
    rows = await db.fetch(
        """SELECT silence_id, account_id, detector, network::text AS network, starts_at, expires_at,
                  reason, created_by, created_at
           FROM silences WHERE ($1 OR expires_at > now()) AND ($2::text IS NULL OR account_id = $2)
           ORDER BY expires_at, silence_id""",
        include_expired, account or None,
    )
    return [dict(row) for row in rows]


async def remove_silence(db, silence_id: int) -> None:
    if await db.fetchval("DELETE FROM silences WHERE silence_id = $1 RETURNING silence_id", silence_id) is None:
        raise NotFound(f"no silence {silence_id}")


class _transaction:
    """`async with _transaction(pool_or_connection) as conn`: one connection, one transaction."""

    def __init__(self, db) -> None:
        self.db = db
        self._acquired = None
        self._tx = None

    async def __aenter__(self):
        conn = self.db
        if hasattr(self.db, "acquire"):
            self._acquired = self.db.acquire()
            conn = await self._acquired.__aenter__()
        self._tx = conn.transaction()
        await self._tx.__aenter__()
        return conn

    async def __aexit__(self, *exc):
        try:
            await self._tx.__aexit__(*exc)
        finally:
            if self._acquired is not None:
                await self._acquired.__aexit__(*exc)


async def pupil_access(
    db,
    pupil_id: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 1000,
) -> dict:
    """Who viewed, downloaded, printed or exported pupil `pupil_id`'s record between two times.

    One entry per account: its counts by action, the first and last time, the days and up to 4
    addresses per day, most recent first; from `pupil_access` (one row per pupil, day, account).
    """
    if not pupil_id or len(pupil_id) > 256:
        raise ValueError("a pupil id is 1 to 256 characters")
    rows = await db.fetch(
        """WITH r AS (
               SELECT account_id, views, downloads, prints, exports, first_at, last_at, addresses
               FROM pupil_access
               WHERE pupil_id = $1
                 AND ($2::date IS NULL OR day >= $2) AND ($3::date IS NULL OR day <= $3)
                 AND ($4::timestamptz IS NULL OR last_at >= $4) AND ($5::timestamptz IS NULL OR first_at < $5))
           SELECT account_id, sum(views)::bigint AS views, sum(downloads)::bigint AS downloads,
                  sum(prints)::bigint AS prints, sum(exports)::bigint AS exports,
                  min(first_at) AS first_at, max(last_at) AS last_at, count(*) AS days,
                  ARRAY(SELECT DISTINCT host(a) FROM r AS o, unnest(o.addresses) AS a
                        WHERE o.account_id = r.account_id ORDER BY 1 LIMIT 16) AS addresses
           FROM r
           GROUP BY account_id
           ORDER BY max(last_at) DESC, account_id
           LIMIT $6""",
        pupil_id,
        since.date() if since else None,
        until.date() if until else None,
        since, until, limit,
    )
    return {"pupil_id": pupil_id, "since": since, "until": until, "accounts": [dict(row) for row in rows]}
