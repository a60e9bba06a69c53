"""Account activity recorded but not yet written to the registry: the write-behind buffer.

Writing every batch's activity to PostgreSQL as it is delivered made the registry the
slowest step of the live loop (one round trip and one upsert row per account per batch,
awaited before the next batch's delivery). So the lifecycle folds each batch's activity into
this buffer and writes it in the background about once a second (`accounts.write_every`),
one row per account however many batches it was active in.

Reading stays exact: whoever needs an account's idle clock (`AccountLifecycle.assess`)
applies the account's unwritten activity on top of the registry row (`apply_to`), with the
same merge rules the registry's own upsert uses, so a login in a batch not yet written still
counts. Anything that reads the registry in bulk (the dormancy sweep, a checkpoint that
commits offsets) writes the buffer first.

Two layers: `pending`, folded since the last write began, and `writing`, handed to a write
that has not been acknowledged yet. A failed write folds `writing` back into `pending`, so
nothing is lost and the next write carries it. Folding is idempotent (earliest and latest
times), so a batch recorded twice after a retry changes nothing.
"""

from __future__ import annotations

from typing import Mapping

from monitor.accounts.memory import apply_activity
from monitor.contract.accounts import Account, AccountActivity, key_hash, later_of


class UnwrittenActivity:
    """Per account, the fold of the activity recorded since the registry last acknowledged a write."""

    def __init__(self) -> None:
        self.pending: dict[str, AccountActivity] = {}
        self.writing: dict[str, AccountActivity] = {}

    def __len__(self) -> int:
        return len(self.pending)

    def add(self, activity: Mapping[str, AccountActivity]) -> None:
        """Fold in a delivered batch's activity (accounts named only by failed logins are skipped,
        as the registry skips them)."""
        pending = self.pending
        for account_id, batch in activity.items():
            if not batch.known:
                continue
            mine = pending.get(account_id)
            if mine is None:
                pending[account_id] = AccountActivity(
                    partition=batch.partition, first_at=batch.first_at, portal=batch.portal, known=True,
                    created_at=batch.created_at, last_login_at=batch.last_login_at,
                    last_activity_at=batch.last_activity_at,
                )
            else:
                fold(mine, batch)

    def take(self) -> dict[str, AccountActivity]:
        """Hand the pending activity to a write; it stays readable as `writing` until `written`."""
        if self.writing:
            raise RuntimeError("a registry write is already in flight")
        self.writing, self.pending = self.pending, {}
        return self.writing

    def written(self) -> None:
        self.writing = {}

    def failed(self) -> None:
        """The write failed: its activity goes back under what was recorded since."""
        writing, self.writing = self.writing, {}
        later, self.pending = self.pending, writing
        for account_id, activity in later.items():
            mine = writing.get(account_id)
            if mine is None:
                writing[account_id] = activity
            else:
                fold(mine, activity)

    def apply_to(self, account_id: str, row: Account | None) -> Account | None:
        """The registry row as it will be once everything recorded is written (None: still unknown)."""
        layers = [layer[account_id] for layer in (self.writing, self.pending) if account_id in layer]
        if not layers:
            return row
        if row is None:
            row = Account(account_id=account_id, key_hash=key_hash(account_id))
        for activity in layers:
            apply_activity(row, activity)
        return row


def fold(mine: AccountActivity, later: AccountActivity) -> None:
    """Merge `later` into `mine` as two consecutive registry writes would (earliest first sighting,
    latest login, activity and creation; the portal first written stays)."""
    mine.first_at = min(mine.first_at, later.first_at)
    mine.portal = mine.portal or later.portal
    mine.created_at = later_of(mine.created_at, later.created_at)
    mine.last_login_at = later_of(mine.last_login_at, later.last_login_at)
    mine.last_activity_at = later_of(mine.last_activity_at, later.last_activity_at)
