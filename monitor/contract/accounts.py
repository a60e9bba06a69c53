"""What the monitor knows of an account, and what one batch of events says about accounts.

Times are Unix seconds (floats) everywhere here; the PostgreSQL registry converts at its
boundary. `idle_since` is the instant the dormancy clock runs from: the last successful
login, or the account's creation (or re-enabling) if later, or, for an account never seen
logging in and with no known creation, the first time the monitor saw it.
"""

from __future__ import annotations

import struct

from typing import Callable, Mapping

import msgspec

STATUSES: tuple[str, ...] = ("active", "dormant", "disabled", "revoked")
RESTRICTED: tuple[str, ...] = ("disabled", "revoked")

# Lifecycle event types and the status each one leaves the account in.
STATUS_EVENTS: dict[str, str] = {
    "account_disabled": "disabled",
    "access_revoked": "revoked",
    "account_enabled": "active",
    "access_restored": "active",
}


class Account(msgspec.Struct, kw_only=True):
    """One row of the account registry."""

    account_id: str
    key_hash: int
    portal: str | None = None
    role: str | None = None
    created_at: float | None = None
    first_seen_at: float | None = None
    last_login_at: float | None = None
    last_activity_at: float | None = None
    reactivated_at: float | None = None
    status: str = "active"
    status_reason: str | None = None
    status_at: float | None = None
    warned_for: float | None = None
    dormant_alert_id: str | None = None

    @property
    def idle_since(self) -> float | None:
        return idle_since(self.last_login_at, self.created_at, self.reactivated_at, self.first_seen_at)

    @property
    def idle_basis(self) -> str:
        """Which fact the dormancy clock runs from, for the alert's evidence."""
        since = self.idle_since
        if since is None:
            return "unknown"
        if since == self.reactivated_at:
            return "re-enabled"
        if since == self.last_login_at:
            return "last_login"
        if since == self.created_at:
            return "created"
        return "first_seen"


def idle_since(
    last_login_at: float | None, created_at: float | None, reactivated_at: float | None, first_seen_at: float | None
) -> float | None:
    """The same expression as the generated column `accounts.idle_since` in PostgreSQL."""
    since = last_login_at
    if created_at is not None and (since is None or created_at > since):
        since = created_at
    if since is None:
        since = first_seen_at  # never seen logging in, creation unknown
    if reactivated_at is not None and (since is None or reactivated_at > since):
        since = reactivated_at
    return since


class Restriction(msgspec.Struct, array_like=True):
    """A disabled or revoked account, as lent to the shard's detectors at start."""

    status: str
    since: float
    reason: str | None = None
    idle_since: float | None = None


def newest_restrictions(restored: dict, lent: Mapping[str, Restriction], entry: Callable[[Restriction], object]) -> dict:
    """A restored checkpoint's per-account restrictions, except where the restriction the
    registry lent is newer (a roster imported since the checkpoint): then `entry(lent)` stands."""
    for account_id, restriction in lent.items():
        current = restored.get(account_id)
        if current is None or restriction.since > current.since:
            restored[account_id] = entry(restriction)
    return restored


class LentLink(msgspec.Struct, array_like=True, gc=False):
    """A parent's account's link to a pupil, as a roster import or a link event left it.

    `linked` False means the link was removed at `at` (for `reason`); the removal is kept so a
    later view of that pupil's record is known to be by an account no longer linked to it.
    """

    pupil_id: str
    at: float
    linked: bool = True
    reason: str | None = None


class LoginAttempt(msgspec.Struct, array_like=True, gc=False):
    """A login attempt, successful or not, that may come after a long idle spell."""

    at: float
    succeeded: bool
    ip: str | None
    session_id: str | None


class Spell(msgspec.Struct, array_like=True, gc=False):
    """An idle spell of an active account, as one batch saw it.

    `start` is when the idle clock was reset (a login, a re-enabling, the creation), or None
    for the spell the registry knows (its `idle_since`). `end` is when an event of the batch
    ended it (`ended_by`: "login", "disabled", "revoked", "enabled", "created"), None if it
    is still running. `attempt` is its first login attempt worth checking.
    """

    start: float | None
    end: float | None = None
    ended_by: str | None = None
    attempt: LoginAttempt | None = None
    started_by: str = "login"  # what reset the clock at `start`: "login", "created" or "enabled"


class AccountActivity(msgspec.Struct, kw_only=True):
    """What one batch says about one account: the per-batch aggregate the registry is written from.

    Kept by the shard with a few field updates per event; objects are made only for idle
    spells that matter: `first`, the registry's spell, once an event of the batch attempts a
    login on it or ends it, and `spells`, spells begun and ended (or attempted) within the
    batch that lasted at least the shard's gap floor. `known` is false when the batch only
    holds failed logins for the name, which may not be an account at all.
    """

    partition: int
    first_at: float
    portal: str | None = None
    known: bool = False
    created_at: float | None = None
    last_login_at: float | None = None
    last_activity_at: float | None = None
    first: Spell | None = None
    spells: list[Spell] | None = None
    spell_start: float | None = None  # the open spell begun in this batch, if any
    spell_cause: str = "login"  # what began it
    spell_attempt: LoginAttempt | None = None  # its first attempt at least the gap floor in
    inactive: bool = False  # disabled or revoked by an event of this batch

    def attempt(
        self, at: float, succeeded: bool, ip: str | None, session_id: str | None, floor: float,
        made: LoginAttempt | None = None,
    ) -> None:
        """A login attempt: kept (and only then allocated) if it may end a long idle spell."""
        if self.inactive:
            return  # a disabled or revoked account is the shard detectors' business
        start = self.spell_start
        if start is None:
            first = self.first
            if first is None:
                self.first = Spell(None, attempt=made or LoginAttempt(at, succeeded, ip, session_id))
            elif first.end is None and first.attempt is None:
                first.attempt = made or LoginAttempt(at, succeeded, ip, session_id)
        elif self.spell_attempt is None and at - start >= floor:
            self.spell_attempt = made or LoginAttempt(at, succeeded, ip, session_id)

    def boundary(self, at: float, ended_by: str, floor: float) -> None:
        """The open idle spell ends at `at` (a login, a status change, the creation)."""
        start = self.spell_start
        if start is None:
            if self.first is None:
                self.first = Spell(None, at, ended_by)
            elif self.first.end is None and not self.inactive:
                self.first.end, self.first.ended_by = at, ended_by
        elif at - start >= floor or self.spell_attempt is not None:
            self.add_spell(Spell(start, at, ended_by, self.spell_attempt, self.spell_cause))
        self.spell_attempt = None
        if ended_by in ("disabled", "revoked"):
            self.inactive, self.spell_start = True, None
        else:
            self.inactive, self.spell_start, self.spell_cause = False, at, ended_by

    def closed_spells(self) -> list[Spell]:
        """The batch's spells worth checking, the open one included if an attempt came in it."""
        spells = list(self.spells or ())
        if self.spell_start is not None and self.spell_attempt is not None:
            spells.append(Spell(self.spell_start, None, None, self.spell_attempt, self.spell_cause))
        return spells

    def add_spell(self, spell: Spell) -> None:
        if self.spells is None:
            self.spells = []
        self.spells.append(spell)

    def merge(self, later: "AccountActivity") -> None:
        """Fold in the aggregate of later events of the same account (events released afterwards)."""
        self.first_at = min(self.first_at, later.first_at)
        self.portal = later.portal or self.portal
        self.known = self.known or later.known
        self.created_at = later_of(self.created_at, later.created_at)
        self.last_login_at = later_of(self.last_login_at, later.last_login_at)
        self.last_activity_at = later_of(self.last_activity_at, later.last_activity_at)
        head = later.first
        if head is not None:  # it continues whatever spell this aggregate left open
            if head.attempt is not None:
                if self.spell_start is None:
                    a = head.attempt
                    self.attempt(a.at, a.succeeded, a.ip, a.session_id, 0.0, made=a)
                elif self.spell_attempt is None:
                    self.spell_attempt = head.attempt  # the lifecycle checks how long it came in
            if head.end is not None:
                self.boundary(head.end, head.ended_by or "login", 0.0)
        for spell in later.spells or ():
            self.add_spell(spell)
        if later.spell_start is not None or later.inactive:
            self.spell_start, self.spell_attempt, self.inactive = later.spell_start, later.spell_attempt, later.inactive
            self.spell_cause = later.spell_cause


class StatusChange(msgspec.Struct, array_like=True, gc=False):
    """A lifecycle event (disabled, enabled, revoked, restored) to record in the registry."""

    account_id: str
    at: float
    status: str
    reason: str | None
    reactivates: bool


class DormancyMark(msgspec.Struct, array_like=True, gc=False):
    """After its alert was delivered: the registry notes that `account_id` was warned or went dormant.

    Applied only while the account's idle clock still runs from `idle_since`, so a login that
    was recorded meanwhile wins.
    """

    account_id: str
    idle_since: float
    stage: str  # "warned" or "dormant"
    at: float
    alert_id: str
    reason: str


def later_of(a: float | None, b: float | None) -> float | None:
    """The later of two optional times (None: unknown, so the other)."""
    if a is None:
        return b
    if b is None:
        return a
    return a if a >= b else b


_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
_words = struct.Struct("<I").iter_unpack


def key_hash(account_id: str) -> int:
    """Kafka's default partitioner hash of the record key (murmur2, made positive).

    Events are keyed by account_id, so `key_hash % partitions` is the partition whose shard
    owns the account; each shard sweeps only its own accounts. Same result as Kafka's Java
    `Utils.toPositive(Utils.murmur2(key))` and aiokafka's partitioner, at about 2 µs a key.
    """
    data = account_id.encode()
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    whole = length & ~3
    for (k,) in _words(data[:whole]):
        k = (k * _M) & _MASK
        k ^= k >> 24
        h = ((h * _M) & _MASK) ^ ((k * _M) & _MASK)
    rest = length & 3
    if rest:
        if rest == 3:
            h ^= data[whole + 2] << 16
        if rest >= 2:
            h ^= data[whole + 1] << 8
        h ^= data[whole]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h & 0x7FFFFFFF
