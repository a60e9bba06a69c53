"""The account registry in memory, for `replay` and the detector tests: no server needed.

It answers exactly as the PostgreSQL registry does (the same merge rules, written once in
Python here and once in SQL there, and held together by tests). Accounts are Python objects
here, which is fine for a replayed file; the daemon keeps millions in PostgreSQL instead.
Due accounts are found with a heap per portal ordered by idle time, entries made stale by a
later login skipped when they surface.
"""

from __future__ import annotations

import heapq
from typing import Iterable, Mapping, Sequence

import msgspec

from monitor.contract.accounts import (
    RESTRICTED,
    Account,
    AccountActivity,
    DormancyMark,
    Restriction,
    StatusChange,
    key_hash,
    later_of,
)
from monitor.accounts.roster import Rejections, RosterRow


class Counts(msgspec.Struct):
    new: int = 0
    updated: int = 0
    unchanged: int = 0


def apply_activity(account: Account, activity: AccountActivity) -> None:
    """Merge one batch's activity into the account (mirrors UPSERT_ACTIVITY in postgres.py)."""
    login = activity.last_login_at
    if account.status == "dormant" and login is not None and (account.last_login_at is None or login > account.last_login_at):
        account.status, account.status_at, account.status_reason = "active", login, "logged in again"
    account.portal = account.portal or activity.portal
    account.first_seen_at = _min(account.first_seen_at, activity.first_at)
    account.last_login_at = _max(account.last_login_at, login)
    account.last_activity_at = _max(account.last_activity_at, activity.last_activity_at)
    account.created_at = _max(account.created_at, activity.created_at)


def apply_change(account: Account, status: str, reason: str | None, at: float, reactivated: float | None) -> None:
    """A batch's last lifecycle event for the account (mirrors APPLY_CHANGES in postgres.py)."""
    if account.status_at is None or at >= account.status_at:
        account.status, account.status_reason, account.status_at = status, reason, at
    account.reactivated_at = _max(account.reactivated_at, reactivated)


def apply_mark(account: Account, mark: DormancyMark) -> None:
    """Note a delivered warning or dormancy alert (mirrors MARK_WARNED / MARK_DORMANT in postgres.py)."""
    if account.idle_since != mark.idle_since:
        return
    if mark.stage == "warned":
        account.warned_for = mark.idle_since
    elif account.status == "active":
        account.status, account.status_at, account.status_reason = "dormant", mark.at, mark.reason
        account.dormant_alert_id = mark.alert_id


def apply_roster_row(account: Account | None, row: RosterRow, now: float) -> Account:
    """Merge a roster row into the account (mirrors IMPORT_ROSTER in postgres.py). The roster
    says who the account is and what the portal did with it; our own `dormant` stands until a login."""
    if account is None:
        account = Account(account_id=row.account_id, key_hash=row.key_hash)
        if row.created_at is None and row.last_login_at is None:
            account.first_seen_at = now  # the 180-day clock starts at the import
        old_status = None
    else:
        old_status = account.status
    account.key_hash = row.key_hash
    account.portal = row.portal or account.portal
    account.role = row.role or account.role
    account.created_at = row.created_at if row.created_at is not None else account.created_at
    account.last_login_at = _max(account.last_login_at, row.last_login_at)
    status = "dormant" if row.status == "active" and old_status == "dormant" else row.status
    if status == old_status:
        account.status_reason = row.reason or account.status_reason
    else:
        account.status = status
        account.status_reason = row.reason if status == "active" else (row.reason or "roster import")
        account.status_at = now
    return account


class MemoryRegistry:
    """The registry as a dict of accounts, with heaps of idle times to find the due ones."""

    def __init__(self) -> None:
        self.accounts: dict[str, Account] = {}
        self._heaps: dict[tuple[str | None, bool], list[tuple[float, str]]] = {}
        self._entries = 0

    async def fetch(self, account_ids: Sequence[str]) -> dict[str, Account]:
        accounts = self.accounts
        return {a: msgspec.structs.replace(accounts[a]) for a in account_ids if a in accounts}

    async def record(
        self,
        activity: Mapping[str, AccountActivity],
        changes: Sequence[StatusChange],
        marks: Sequence[DormancyMark],
    ) -> int:
        accounts = self.accounts
        before: dict[str, tuple] = {}  # accounts whose idle time, status or portal may move: re-heaped
        went_dormant = 0
        for account_id, batch in activity.items():
            if not batch.known:
                continue  # only failed logins: the name may be no account at all
            account = accounts.get(account_id)
            if account is None:
                account = accounts[account_id] = Account(account_id=account_id, key_hash=key_hash(account_id))
                before[account_id] = ()
            elif account_id not in before:
                before[account_id] = (account.idle_since, account.status, account.portal)
            apply_activity(account, batch)
        for account_id, (status, reason, at, reactivated) in final_changes(changes).items():
            account = accounts.get(account_id)
            if account is not None:
                if account_id not in before:
                    before[account_id] = (account.idle_since, account.status, account.portal)
                apply_change(account, status, reason, at, reactivated)
        for mark in marks:
            account = accounts.get(mark.account_id)
            if account is not None:
                was = account.status
                apply_mark(account, mark)
                went_dormant += was != account.status
        for account_id, was in before.items():
            account = accounts[account_id]
            if was != (account.idle_since, account.status, account.portal):
                self._track(account)
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
        heap = self._heaps.get((portal, warning))
        found: dict[str, Account] = {}
        elsewhere: list[tuple[float, str]] = []
        while heap and heap[0][0] <= idle_before and len(found) < limit:
            idle, account_id = heapq.heappop(heap)
            self._entries -= 1
            account = self.accounts.get(account_id)
            if (
                account is None
                or account.status != "active"
                or account.portal != portal
                or account.idle_since != idle
                or (warning and (idle <= idle_after or account.warned_for == idle))
            ):
                continue  # stale (a later login, a status change) or out of the range: consumed
            if partitions > 1 and account.key_hash % partitions != partition:
                elsewhere.append((idle, account_id))
                continue
            found[account_id] = msgspec.structs.replace(account)
        for entry in elsewhere:
            heapq.heappush(heap, entry)  # type: ignore[arg-type]
            self._entries += 1
        return list(found.values())

    async def restricted(self) -> dict[str, Restriction]:
        return {
            a.account_id: Restriction(a.status, a.status_at or 0.0, a.status_reason, a.idle_since)
            for a in self.accounts.values()
            if a.status in RESTRICTED
        }

    async def count(self, status: str, partitions: Sequence[int] | None = None, total: int = 1) -> int:
        owned = None if partitions is None else set(partitions)
        return sum(
            1 for a in self.accounts.values()
            if a.status == status and (owned is None or a.key_hash % max(total, 1) in owned)
        )

    async def import_roster(self, rows: Iterable[RosterRow], rejections: Rejections, now: float) -> Counts:
        last: dict[str, RosterRow] = {}
        for row in rows:
            earlier = last.get(row.account_id)
            if earlier is not None:
                rejections.add(earlier.line, "duplicate", f"account_id {row.account_id!r} again on line {row.line}, which is used")
            last[row.account_id] = row
        counts = Counts()
        for row in last.values():
            account = self.accounts.get(row.account_id)
            if account is None:
                counts.new += 1
                account = self.accounts[row.account_id] = apply_roster_row(None, row, now)
            else:
                before = msgspec.structs.astuple(account)
                apply_roster_row(account, row, now)
                if msgspec.structs.astuple(account) == before:
                    counts.unchanged += 1
                    continue
                counts.updated += 1
            self._track(account)
        return counts

    def _track(self, account: Account) -> None:
        """(Re)enter an active account in the heaps of its portal at its current idle time."""
        idle = account.idle_since
        if idle is None or account.status != "active":
            return
        for warning in (False, True):
            heapq.heappush(self._heaps.setdefault((account.portal, warning), []), (idle, account.account_id))
        self._entries += 2
        if self._entries > 8 * len(self.accounts) + 4096:
            self._compact()

    def _compact(self) -> None:
        """Drop stale heap entries: rebuild from the accounts as they are."""
        heaps: dict[tuple[str | None, bool], list[tuple[float, str]]] = {}
        for account in self.accounts.values():
            idle = account.idle_since
            if idle is not None and account.status == "active":
                for warning in (False, True):
                    heaps.setdefault((account.portal, warning), []).append((idle, account.account_id))
        for heap in heaps.values():
            heapq.heapify(heap)
        self._heaps = heaps
        self._entries = sum(len(h) for h in heaps.values())


def final_changes(changes: Sequence[StatusChange]) -> dict[str, tuple[str, str | None, float, float | None]]:
    """Per account, the batch's latest lifecycle event and its latest re-enabling, if any."""
    final: dict[str, tuple[str, str | None, float, float | None]] = {}
    for change in sorted(changes, key=lambda c: c.at):
        previous = final.get(change.account_id)
        reactivated = previous[3] if previous else None
        if change.reactivates:
            reactivated = change.at
        final[change.account_id] = (change.status, change.reason, change.at, reactivated)
    return final


def _min(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if a <= b else b


_max = later_of
