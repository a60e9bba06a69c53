"""The store-side step of account lifecycle rules, run by `monitor.delivery.delivery` around each delivery.

Per batch, in this order (`Pipeline.deliver`):
1. `assess`: the login attempts of the batch are checked against the registry's idle clock
   (one query for the batch's accounts): an attempt after the dormancy period raises
   `dormant_account_login`, and any warning or dormancy crossing that fell before it is
   raised too, at its own event time. Idle spells inside the batch are checked the same way
   from the shard's aggregate.
2. the sinks get the batch's findings;
3. `record`: the batch's activity, status changes and dormancy marks go to the registry,
   only now, so a crash before this point re-reads the batch and finds the same alerts again.
   Status changes and marks are written at once; plain activity (logins, page views) is
   folded into a write-behind buffer (`monitor.accounts.unwritten`) written in the background
   every `write_every` seconds, and `assess` reads the registry through it. `flush` writes it
   now: the service calls it before every checkpoint, so the offsets committed never run
   ahead of the registry;
4. `sweep`: each shard whose watermark moved on by `sweep_every` queries the registry for its
   own accounts (Kafka key hash) that crossed a warning or the dormancy period by the
   watermark (after a flush, so recent logins count); those alerts go through 2 and 3 as well.
   Live, at most once per `write_every` of wall time: when catching up, event time passes
   `sweep_every` many times a second. Sweeping later changes no alert: each carries its
   crossing time, and a login that came first raises the crossings before it in `assess`.

Event time only: the watermark is the shard's, advanced by events or, live and quiet, by the
wall clock (`Service`). Alert ids come from the idle spell, so a replay, a redelivery or a
second process never makes a second alert for the same spell.
"""

from __future__ import annotations

import asyncio
import time
from typing import Iterable

import structlog

from detectors.dormant_account import DormantAccount, DormantAccountSettings
from detectors.dormant_account_login import DormantAccountLoginSettings, idle_login_alert
from monitor.contract.accounts import RESTRICTED, Account, AccountActivity, LoginAttempt, Restriction, Spell
from monitor.accounts.registry import AccountRegistry
from monitor.accounts.unwritten import UnwrittenActivity
from monitor.engine.findings import NO_WATERMARK, Findings, ShardClock
from monitor.contract.settings import Section
from monitor.contract.durations import Seconds

log = structlog.get_logger("monitor.accounts.lifecycle")
# What began an idle spell inside a batch, as the registry field it would set.
SPELL_BASIS = {"login": "last_login_at", "created": "created_at", "enabled": "reactivated_at"}


class AccountLifecycle:
    """Dormancy against the account registry, for every shard of this process."""

    def __init__(
        self,
        registry: AccountRegistry,
        dormancy: DormantAccountSettings,
        login: DormantAccountLoginSettings,
        *,
        drain: bool = False,
        metrics=None,
        gauge_every: float = 60.0,
        write_every: float = 1.0,
        write_limit: int = 100_000,
    ) -> None:
        self.registry = registry
        self.rules = DormantAccount(dormancy)
        self.settings = dormancy
        self.login = login
        self.drain = drain  # replay: sweep until nothing is due; live: one chunk per delivery
        self.metrics = metrics
        self.gauge_every = gauge_every
        self.partitions = 1  # partitions of the topic, for the key-hash ownership of accounts
        self.restricted: dict[str, Restriction] = {}
        self._swept: dict[int, float] = {}  # partition -> watermark of its last complete sweep
        self._starts: dict[int, float] = {}  # partition -> earliest event time this process saw
        self._backlog: set[int] = set()
        self._owned: set[int] = set()  # partitions of the shards last swept: the gauge counts their accounts
        self._gauge_at = float("-inf")
        # Write-behind of plain activity: at most one background write in flight; 0 s writes
        # every batch through, as before the buffer.
        self.write_every = write_every
        self.write_limit = write_limit  # accounts pending that trigger a write whatever the time
        self.unwritten = UnwrittenActivity()
        self._write: asyncio.Future[None] | None = None
        self._written_at = time.monotonic()
        self._swept_wall = float("-inf")  # monotonic time of the last sweep (live: at most one per write_every)

    # -- start and assignment -----------------------------------------------------------------

    async def start(self) -> None:
        await self.refresh()

    async def refresh(self, partitions: int | None = None) -> None:
        """Reload the disabled and revoked accounts (before new shards are built)."""
        if partitions:
            self.partitions = partitions
        self.restricted = await self.registry.restricted()

    # -- 1. the batch's login attempts ---------------------------------------------------------

    async def assess(self, findings: Findings) -> None:
        activity = findings.account_activity
        self._note_starts(activity)
        checked = [account_id for account_id, a in activity.items() if a.first is not None or a.spells or a.spell_attempt]
        if not checked:
            return
        rows = await self.registry.fetch(checked)
        raised = {alert.alert_id for alert in findings.alerts}
        for account_id in checked:
            batch = activity[account_id]
            row = self.unwritten.apply_to(account_id, rows.get(account_id))
            if row is not None and row.status in RESTRICTED:
                continue  # a lapsed or revoked account is the shard detectors' business
            portal = (row.portal if row is not None else None) or batch.portal
            first = batch.first
            if row is not None and first is not None and row.idle_since is not None:
                self._check(
                    findings, raised, row, first, row.idle_since, portal,
                    warned=row.warned_for == row.idle_since,
                    dormant=row.status == "dormant",
                    since=self._since(batch.partition),
                    mark=True,
                )
            for spell in batch.closed_spells():
                if spell.start is None:
                    continue
                view = Account(account_id=account_id, key_hash=0, portal=portal)
                setattr(view, SPELL_BASIS.get(spell.started_by, "last_login_at"), spell.start)
                self._check(findings, raised, view, spell, spell.start, portal, warned=False, dormant=False, since=NO_WATERMARK, mark=False)

    def _check(
        self,
        findings: Findings,
        raised: set[str],
        account: Account,
        spell: Spell,
        idle: float,
        portal: str | None,
        *,
        warned: bool,
        dormant: bool,
        since: float,
        mark: bool,
    ) -> None:
        """Alerts for one idle spell from `idle`: the crossings before it ended, and a login attempt in it.

        A spell still running is left to the sweep for its crossings (the registry keeps
        `idle`); one that an event of the batch ended is checked up to that event.
        """
        period = self.rules.period(portal)
        if period <= 0:
            return
        if self.settings.enabled and spell.end is not None and spell.end > idle:
            for stage in self.rules.stages(idle, portal, warned=warned, dormant=dormant, now=spell.end, since=since):
                alert, note = self.rules.alert(stage, account, idle, portal)
                if alert.alert_id not in raised:
                    raised.add(alert.alert_id)
                    findings.alerts.append(alert)
                if mark:
                    findings.dormancy_marks.append(note)
        attempt = spell.attempt
        if attempt is None and spell.ended_by == "login":
            attempt = LoginAttempt(spell.end, True, None, None)  # type: ignore[arg-type]
        if self.login.enabled and attempt is not None and attempt.at > idle and (dormant or attempt.at - idle >= period):
            alert = idle_login_alert(
                account_id=account.account_id,
                portal=portal,
                attempt=attempt,
                idle_since=idle,
                idle_basis=account.idle_basis,
                period=period,
                severity=self.login.severity,
            )
            if alert.alert_id not in raised:
                raised.add(alert.alert_id)
                findings.alerts.append(alert)

    def _note_starts(self, activity: dict[str, AccountActivity]) -> None:
        starts = self._starts
        for batch in activity.values():
            start = starts.get(batch.partition)
            if start is None or batch.first_at < start:
                starts[batch.partition] = batch.first_at

    def _since(self, partition: int) -> float:
        """Up to when this shard's warnings were already swept (or its stream began)."""
        swept = self._swept.get(partition)
        if swept is not None:
            return swept
        return self._starts.get(partition, NO_WATERMARK)

    # -- 3. write ------------------------------------------------------------------------------

    async def record(self, findings: Findings) -> None:
        """Take a delivered batch into the registry: its status changes and marks now, its plain
        activity by the write-behind buffer (written when `write_every` has passed)."""
        if self._write is not None and self._write.done():
            await self._finish_write()  # a background write failed: raise, the delivery retries this step
        self.unwritten.add(findings.account_activity)
        if findings.account_changes or findings.dormancy_marks or self.write_every <= 0:
            await self.flush(findings.account_changes, findings.dormancy_marks)
            return
        if self._write is None and self.unwritten.pending and (
            time.monotonic() - self._written_at >= self.write_every or len(self.unwritten) >= self.write_limit
        ):
            self._write = asyncio.ensure_future(self._write_unwritten())

    async def flush(self, changes=(), marks=()) -> None:
        """Write everything recorded so far, and `changes` and `marks` after it, now."""
        await self._finish_write()
        await self._write_unwritten(changes, marks)

    async def _finish_write(self) -> None:
        """Wait for the background write in flight, if any (raising its error, if it failed)."""
        write, self._write = self._write, None
        if write is not None:
            await write

    async def _write_unwritten(self, changes=(), marks=()) -> None:
        taken = self.unwritten.take()
        self._written_at = time.monotonic()
        if not (taken or changes or marks):
            self.unwritten.written()
            return
        try:
            went_dormant = await self.registry.record(taken, changes, marks)
        except BaseException:
            self.unwritten.failed()  # kept for the next write: nothing recorded is lost
            raise
        self.unwritten.written()
        if went_dormant and self.metrics is not None:
            self.metrics.dormant_accounts.inc(went_dormant)  # a full count corrects it every gauge_every
        await self.publish_gauge()

    # -- 4. sweep ------------------------------------------------------------------------------

    async def sweep(self, shards: Iterable[ShardClock]) -> Findings | None:
        """Alerts for the accounts that crossed by their shard's watermark; None if no shard was due.

        The watermarks are those the batch being delivered was run to, not the shards' current
        ones: the next batch may be running already, and its logins are not recorded yet.
        """
        if not self.settings.enabled:
            return None
        findings = Findings()
        swept: dict[int, float] = {}
        backlog: dict[int, bool] = {}
        shards = list(shards)
        owned = {shard.partition for shard in shards}
        if owned != self._owned:
            self._owned = owned
            self._gauge_at = float("-inf")  # recount for the new set of partitions
        if not self.drain and not self._backlog and time.monotonic() - self._swept_wall < self.write_every:
            return None  # catching up, event time flies: sweep (and so flush) at most once per write;
            # a backlog (a fresh roster import) is still worked off a chunk per delivery
        due = [shard for shard in shards if self._sweep_due(shard)]
        if not due:
            return None
        self._swept_wall = time.monotonic()
        await self.flush()  # the registry must hold every login recorded before it is asked who is idle
        for shard in due:
            watermark = shard.watermark
            partition = shard.partition
            last = self._swept.get(partition)
            since = last if last is not None else self._starts.get(partition, watermark)
            started = time.perf_counter()
            full = await self._sweep_shard(findings, partition, watermark, min(since, watermark))
            if self.metrics is not None:
                self.metrics.dormancy_sweep_seconds.observe(time.perf_counter() - started)
            backlog[partition] = full  # more due: again next time, from the same `since`
            if not full:
                swept[partition] = watermark
        # Only now, so a sweep that failed half-way is repeated whole by the delivery's retry.
        self._swept.update(swept)
        for partition, full in backlog.items():
            if full:
                self._backlog.add(partition)
            else:
                self._backlog.discard(partition)
        return findings if findings.alerts else None

    def _sweep_due(self, shard: ShardClock) -> bool:
        if shard.watermark == NO_WATERMARK:
            return False
        last = self._swept.get(shard.partition)
        return last is None or shard.watermark - last >= self.settings.sweep_every or shard.partition in self._backlog

    async def _sweep_shard(self, findings: Findings, partition: int, watermark: float, since: float) -> bool:
        limit = self.settings.sweep_limit
        full = False
        for portal, period in self.rules.classes():
            warning = min(float(self.settings.warning), period)
            due = []
            if warning > 0:
                due = await self.registry.due(
                    portal=portal,
                    idle_after=min(watermark - period, since - period + warning),
                    idle_before=watermark - period + warning,
                    warning=True,
                    partition=partition,
                    partitions=self.partitions,
                    limit=limit,
                )
                full = full or len(due) >= limit
            for account in due:
                self._raise(findings, "warning", account, portal)
            due = await self.registry.due(
                portal=portal,
                idle_after=float("-inf"),
                idle_before=watermark - period,
                warning=False,
                partition=partition,
                partitions=self.partitions,
                limit=limit,
            )
            full = full or len(due) >= limit
            for account in due:
                self._raise(findings, "dormant", account, portal)
        return full

    def _raise(self, findings: Findings, stage: str, account: Account, portal: str | None) -> None:
        idle = account.idle_since
        if idle is None:
            return
        alert, mark = self.rules.alert(stage, account, idle, portal)
        findings.alerts.append(alert)
        findings.dormancy_marks.append(mark)

    async def publish_gauge(self, force: bool = False) -> None:
        """Set `portal_monitor_dormant_accounts` from a count of this process's accounts in the
        registry (at most every `gauge_every` s; in between, accounts the sweep made dormant are
        added as they are marked)."""
        if self.metrics is None or not self._owned:
            return
        now = time.monotonic()
        if not force and now - self._gauge_at < self.gauge_every:
            return
        self._gauge_at = now
        self.metrics.dormant_accounts.set(await self.registry.count("dormant", sorted(self._owned), self.partitions))


class AccountSettings(Section):
    """The account registry in PostgreSQL (`run`): every account seen or imported, and its status."""

    registry: bool = True
    write_every: Seconds = Seconds(1)
    """How often the activity of delivered batches (logins, page views) is written to the
    registry, one row per account; status changes and dormancy marks are written at once, and
    everything before each checkpoint. 0 writes every batch."""
    write_limit: int = 100_000
    """Accounts with unwritten activity that start a write whatever the time."""
