"""The roster: a CSV export of the portal's accounts, imported so accounts that never log in are covered too.

Columns (a header row names them, in any order, any case): `account_id, portal, role,
created_at, last_login_at, status`, and optionally `reason`. See docs/accounts.md.

Rows are parsed one at a time (a file of millions is streamed, never held whole); a row
that cannot be used is rejected with its line number and one of a fixed set of reasons,
counted, and the rest of the file goes on.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone
from typing import Callable, Iterator

import msgspec

from monitor.contract.accounts import STATUSES, key_hash

COLUMNS: tuple[str, ...] = ("account_id", "portal", "role", "created_at", "last_login_at", "status")
OPTIONAL_COLUMNS: tuple[str, ...] = ("reason",)
PORTALS: tuple[str, ...] = ("schools", "parent")
REJECTION_REASONS: tuple[str, ...] = (
    "wrong_field_count",
    "missing_account_id",
    "too_long",
    "bad_portal",
    "bad_status",
    "bad_timestamp",
    "timestamp_without_offset",
    "not_utf8",
    "duplicate",
)
MAX_ID = 256
MAX_TEXT = 1024
KEEP_REJECTIONS = 1000  # rejected rows kept with their detail; beyond, counted only


class RosterError(Exception):
    """The file cannot be read as a roster at all (missing, not a file, no usable header)."""


class RosterRow(msgspec.Struct, array_like=True, gc=False):
    line: int
    account_id: str
    key_hash: int
    portal: str | None
    role: str | None
    created_at: float | None
    last_login_at: float | None
    status: str
    reason: str | None


class RejectedRow(msgspec.Struct, array_like=True):
    line: int
    reason: str
    detail: str


class Rejections:
    """Rejected rows: every one counted by reason and passed to `also`, the first `keep` kept."""

    def __init__(self, keep: int = KEEP_REJECTIONS, also: Callable[[RejectedRow], None] | None = None) -> None:
        self.keep = keep
        self.also = also
        self.rows: list[RejectedRow] = []
        self.by_reason: dict[str, int] = {}

    def add(self, line: int, reason: str, detail: str) -> None:
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1
        row = RejectedRow(line, reason, detail)
        if len(self.rows) < self.keep:
            self.rows.append(row)
        if self.also is not None:
            self.also(row)

    @property
    def total(self) -> int:
        return sum(self.by_reason.values())


class _Rejected(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail


def parse_time(text: str, column: str) -> float | None:
    """RFC 3339 / ISO 8601 with an offset or Z, or a bare date (midnight UTC); empty is None."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise _Rejected("bad_timestamp", f"{column}: not an ISO 8601 date or time: {text[:64]!r}") from None
    if value.tzinfo is None:
        if len(text) == 10:  # YYYY-MM-DD
            value = value.replace(tzinfo=timezone.utc)
        else:
            raise _Rejected(
                "timestamp_without_offset",
                f"{column}: {text[:64]!r} has no UTC offset (write e.g. {text[:19]}Z or {text[:19]}+01:00)",
            )
    return value.timestamp()


class CsvRows:
    """Streams a CSV file with a header row: opens it, checks the header names the `columns`
    (and finds the `optional` ones), and yields what `_row(line, fields)` makes of each row;
    rows it rejects (`_Rejected`) are collected in `rejections` with their line numbers.
    The roster (`RosterReader`) and the pupil links (`monitor.accounts.links.LinksReader`)."""

    columns: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()

    def __init__(self, path: str, rejections: Rejections | None = None) -> None:
        self.path = path
        self.rejections = rejections if rejections is not None else Rejections()
        self.rows_read = 0
        self.on_rows: Callable[[int, bool], None] | None = None
        """Called with the rows read so far every 8,192 rows, and once with True at the end
        (the CLI's progress line: the import reads the file synchronously, in COPY)."""
        try:
            self._file = open(path, "r", encoding="utf-8-sig", errors="replace", newline="")
        except OSError as error:
            raise RosterError(f"cannot read {path}: {error.strerror}") from None
        try:
            self._reader = csv.reader(self._file)
            header = next(self._reader, None)
        except (csv.Error, OSError) as error:
            self._file.close()
            raise RosterError(f"cannot read {path}: {error}") from None
        if header is None:
            self._file.close()
            raise RosterError(f"{path} is empty: expected a header row with {', '.join(self.columns)}")
        names = [name.strip().lower() for name in header]
        missing = [column for column in self.columns if column not in names]
        if missing:
            self._file.close()
            also = f", optionally {', '.join(self.optional)}" if self.optional else ""
            raise RosterError(
                f"{path}: the header row lacks {', '.join(missing)} "
                f"(found: {', '.join(names) or 'nothing'}; expected {', '.join(self.columns)}{also})"
            )
        self._width = len(names)
        self._at = {name: names.index(name) for name in self.columns + self.optional if name in names}

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def __iter__(self):
        reader = self._reader
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                if self.on_rows is not None:
                    self.on_rows(self.rows_read, True)
                return
            except csv.Error as error:
                self.rows_read += 1
                self.rejections.add(reader.line_num, "wrong_field_count", f"not valid CSV: {error}")
                continue
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue  # blank line
            self.rows_read += 1
            if self.on_rows is not None and not self.rows_read & 0x1FFF:
                self.on_rows(self.rows_read, False)
            line = reader.line_num
            try:
                yield self._row(line, fields)
            except _Rejected as rejected:
                self.rejections.add(line, rejected.reason, rejected.detail)

    def _fields(self, fields: list[str]) -> dict[str, int]:
        """Checks every row shares: its width and its encoding; the column positions."""
        if len(fields) != self._width:
            raise _Rejected("wrong_field_count", f"expected {self._width} fields, found {len(fields)}")
        if any("\ufffd" in field for field in fields):
            raise _Rejected("not_utf8", "the row is not valid UTF-8")
        return self._at

    def _row(self, line: int, fields: list[str]):
        raise NotImplementedError  # each reader says what a row becomes


class RosterReader(CsvRows):
    """Streams the rows of a roster file; rejected rows are collected in `rejections`."""

    columns = COLUMNS
    optional = OPTIONAL_COLUMNS

    def __iter__(self) -> Iterator[RosterRow]:
        return super().__iter__()

    def _row(self, line: int, fields: list[str]) -> RosterRow:
        at = self._fields(fields)
        account_id = fields[at["account_id"]].strip()
        if not account_id:
            raise _Rejected("missing_account_id", "account_id is empty")
        if len(account_id) > MAX_ID:
            raise _Rejected("too_long", f"account_id is longer than {MAX_ID} characters")
        portal = fields[at["portal"]].strip().lower() or None
        if portal is not None and portal not in PORTALS:
            raise _Rejected("bad_portal", f"portal {portal[:64]!r} is not one of {', '.join(PORTALS)} (or empty)")
        role = fields[at["role"]].strip() or None
        if role is not None and len(role) > MAX_ID:
            raise _Rejected("too_long", f"role is longer than {MAX_ID} characters")
        status = fields[at["status"]].strip().lower() or "active"
        if status not in STATUSES:
            raise _Rejected("bad_status", f"status {status[:64]!r} is not one of {', '.join(STATUSES)} (or empty)")
        reason = fields[at["reason"]].strip()[:MAX_TEXT] or None if "reason" in at else None
        return RosterRow(
            line=line,
            account_id=account_id,
            key_hash=key_hash(account_id),
            portal=portal,
            role=role,
            created_at=parse_time(fields[at["created_at"]].strip(), "created_at"),
            last_login_at=parse_time(fields[at["last_login_at"]].strip(), "last_login_at"),
            status=status,
            reason=reason,
        )


class ImportReport(msgspec.Struct, kw_only=True):
    """What an import did, for the CLI's report."""

    path: str
    rows_read: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    rejected_by_reason: dict[str, int] = {}
    rejected_rows: list[RejectedRow] = []
    seconds: float = 0.0

    def render(self) -> str:
        lines = [
            f"{self.path}: {self.rows_read:,} rows read in {self.seconds:.1f} s: {self.new:,} new accounts, "
            f"{self.updated:,} updated, {self.unchanged:,} unchanged, {self.rejected:,} rejected",
        ]
        if self.rejected:
            lines.append(
                "rejected by reason: " + ", ".join(f"{k} {v:,}" for k, v in sorted(self.rejected_by_reason.items()))
            )
            out = io.StringIO()
            for row in sorted(self.rejected_rows, key=lambda r: r.line):
                out.write(f"  line {row.line}: {row.reason}: {row.detail}\n")
            lines.append(out.getvalue().rstrip("\n"))
            if self.rejected > len(self.rejected_rows):
                lines.append(f"  ... and {self.rejected - len(self.rejected_rows):,} more (use --rejects FILE for all)")
        return "\n".join(lines)
