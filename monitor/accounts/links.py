"""The links file: which pupils each parent's account may see, exported by the school, imported as events.

A second CSV beside the roster (docs/accounts.md). Columns (a header row names them, in any
order, any case): `account_id, pupil_id`, and optionally `status` (`linked`, the default, or
`unlinked`), `reason` (why a link was removed: `court_order`, `child_protection`,
`left_school`, `parental_responsibility_questioned`, or free text) and `since` (when the link
was made or removed, RFC 3339 / ISO 8601 with an offset, or a date; default: for a link,
2000-01-01, i.e. linked for every view; for a removal, the import time).

Each usable row becomes one `pupil_linked` or `pupil_unlinked` event of `portal.event/v1`,
with an event id derived from the row (importing the same file twice gives the same ids), so
links travel the same path as the portal's own link events: keyed by account onto the events
topic (`portal-monitor accounts links FILE --publish`), or in front of a replay
(`portal-monitor replay --links FILE`), and become the shard's account state, checkpointed with
it. Rows that cannot be used are rejected with their line and reason, like the roster's.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Iterator

import msgspec

from monitor.accounts.roster import MAX_ID, MAX_TEXT, CsvRows, Rejections, _Rejected, parse_time

COLUMNS: tuple[str, ...] = ("account_id", "pupil_id")
OPTIONAL_COLUMNS: tuple[str, ...] = ("status", "reason", "since")
LINK_STATUSES: dict[str, str] = {"linked": "pupil_linked", "unlinked": "pupil_unlinked"}
REJECTION_REASONS: tuple[str, ...] = (
    "wrong_field_count",
    "missing_account_id",
    "missing_pupil_id",
    "too_long",
    "bad_status",
    "bad_timestamp",
    "timestamp_without_offset",
    "not_utf8",
)
_encode = msgspec.json.Encoder().encode
LINKED_SINCE = datetime(2000, 1, 1, tzinfo=timezone.utc).timestamp()  # the decoder's earliest plausible time


class LinkEvent(msgspec.Struct, omit_defaults=True):
    """A row of the links file as a `portal.event/v1` record."""

    event_id: str
    type: str
    ts: str
    account_id: str
    pupil_id: str
    portal: str = "parent"
    reason: str | None = None


class LinksReader(CsvRows):
    """Streams the rows of a links file as events; rejected rows are collected in `rejections`."""

    columns = COLUMNS
    optional = OPTIONAL_COLUMNS

    def __init__(self, path: str, now: float, rejections: Rejections | None = None) -> None:
        self.now = now
        super().__init__(path, rejections)

    def __iter__(self) -> Iterator[LinkEvent]:
        return super().__iter__()

    def records(self) -> Iterator[bytes]:
        """The events as JSON lines (without the newline)."""
        for event in self:
            yield _encode(event)

    def _row(self, line: int, fields: list[str]) -> LinkEvent:
        at = self._fields(fields)
        account_id = fields[at["account_id"]].strip()
        if not account_id:
            raise _Rejected("missing_account_id", "account_id is empty")
        pupil_id = fields[at["pupil_id"]].strip()
        if not pupil_id:
            raise _Rejected("missing_pupil_id", "pupil_id is empty")
        if len(account_id) > MAX_ID or len(pupil_id) > MAX_ID:
            raise _Rejected("too_long", f"account_id and pupil_id are at most {MAX_ID} characters")
        status = (fields[at["status"]].strip().lower() if "status" in at else "") or "linked"
        kind = LINK_STATUSES.get(status)
        if kind is None:
            raise _Rejected("bad_status", f"status {status[:64]!r} is not linked or unlinked (or empty)")
        reason = (fields[at["reason"]].strip()[:MAX_TEXT] or None) if "reason" in at and kind == "pupil_unlinked" else None
        since = parse_time(fields[at["since"]].strip(), "since") if "since" in at else None
        if since is None:
            # A link of unknown age holds for every view (from the earliest plausible event time,
            # 2000-01-01); a removal of unknown date, from now.
            since = LINKED_SINCE if kind == "pupil_linked" else self.now
        ts = datetime.fromtimestamp(since, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        digest = hashlib.sha256(f"{account_id}\x1f{pupil_id}\x1f{kind}\x1f{ts}".encode()).hexdigest()[:24]
        return LinkEvent(event_id=f"link-{digest}", type=kind, ts=ts, account_id=account_id, pupil_id=pupil_id, reason=reason)
