"""The account registry's interface, kept by PostgreSQL (`run`, `demo`, the `accounts` CLI) or in memory (`replay`, tests).

Both give the same answers for the same calls; `tests/test_account_registries.py` holds them
to it. Times are Unix seconds.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Protocol, Sequence

from monitor.contract.accounts import Account, AccountActivity, DormancyMark, Restriction, StatusChange
from monitor.accounts.roster import Rejections, RosterRow


class ImportCounts(Protocol):
    new: int
    updated: int
    unchanged: int


class AccountRegistry(Protocol):
    async def fetch(self, account_ids: Sequence[str]) -> dict[str, Account]:
        """The registry rows of those accounts that exist."""
        ...

    async def record(
        self,
        activity: Mapping[str, AccountActivity],
        changes: Sequence[StatusChange],
        marks: Sequence[DormancyMark],
    ) -> int:
        """Write one batch: activity (first seen, last login, last activity), status changes, then marks.

        Returns how many accounts the marks made dormant.

        All at once (one transaction in PostgreSQL); a redelivered batch changes nothing more.
        Accounts named only by failed logins are not created.
        """
        ...

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
        """Active accounts of `portal` idle since a time in (idle_after, idle_before], oldest first.

        With `warning`, only those not yet warned for their current idle spell. Only the
        accounts whose Kafka key falls in `partition` of `partitions`.
        """
        ...

    async def restricted(self) -> dict[str, Restriction]:
        """Every disabled or revoked account (few), for the shards' detectors."""
        ...

    async def count(self, status: str, partitions: Sequence[int] | None = None, total: int = 1) -> int:
        """How many accounts have `status` (only those of `partitions` of `total`, if given)."""
        ...

    async def import_roster(self, rows: Iterable[RosterRow], rejections: Rejections, now: float) -> "ImportCounts":
        """Upsert roster rows (the last row of an account wins; earlier ones are rejected as duplicates)."""
        ...


async def import_roster_file(
    registry: AccountRegistry, path: str, now: float, rejections: Rejections | None = None, watch=None
):
    """Import a roster CSV into `registry`; the report. Raises `RosterError` if the file cannot be read.
    `watch(reader)`, if given, is called with the `RosterReader` first (progress reads `rows_read`)."""
    import time

    from monitor.accounts.roster import ImportReport, RosterReader

    started = time.perf_counter()
    with RosterReader(path, rejections) as reader:
        if watch is not None:
            watch(reader)
        counts = await registry.import_roster(reader, reader.rejections, now)
    rejected = reader.rejections
    return ImportReport(
        path=path,
        rows_read=reader.rows_read,
        new=counts.new,
        updated=counts.updated,
        unchanged=counts.unchanged,
        rejected=rejected.total,
        rejected_by_reason=dict(rejected.by_reason),
        rejected_rows=list(rejected.rows),
        seconds=time.perf_counter() - started,
    )
