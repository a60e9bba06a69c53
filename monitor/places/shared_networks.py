"""Organisation-shared networks: egress addresses that many accounts log in from.

A school's NAT, the council offices or a library are used by dozens of accounts. Where GeoIP
places them says only roughly where one person is (within the organisation's area; a school's
filtering proxy may even egress in another city or country), so once learnt they never count
as a new country for `new_country`, and `impossible_travel` takes them as places as wide as the
organisation's area (`organisation_radius_km`), not as points.

What is counted: each successful login adds its account to its egress network, the IPv4
address (/32) or the IPv6 /64. Allowlisted and risky networks (Tor, VPN, proxy, hosting) are
not counted: a VPN exit many accounts use is not the organisation's. A network is learnt as
shared once at least `min_accounts` distinct accounts logged in from it over at least
`min_span` of event time (so a burst of logins to many accounts from one address within hours,
which is what credential stuffing looks like, is not learnt), and forgotten after
`forget_after` without a login.

Distinct accounts are counted with a bottom-k sketch: per network the k smallest 63-bit hashes
of account ids (k = `SKETCH_SIZE` >= `min_accounts`). It is exact below k, its union with
another network's sketch is the sketch of the union, and it estimates larger counts. That is
what makes the count global while the engine shards accounts over partitions and processes:
every process merges its sketches into PostgreSQL (`flush`) and reads the learnt set back
(`load`); within one process every shard shares one `SharedNetworks`. Detectors only read the
in-memory set (`key in shared`).

Without a database (a replay, the demo, tests) one process sees every account and the result
is the same as with one.
"""

from __future__ import annotations

import hashlib
import ipaddress
from array import array
from bisect import bisect_left
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import msgspec
from monitor.contract.settings import Section
from monitor.contract.durations import Seconds

SKETCH_SIZE = 64
MIGRATION = Path(__file__).parent.parent / "store" / "sql" / "0005_shared_networks.sql"
_MAX_HASH = float(1 << 63)


def account_hash(account_id: str) -> int:
    """A stable 63-bit hash of an account id: the same in every process (unlike `hash()`)."""
    return int.from_bytes(hashlib.blake2b(account_id.encode(), digest_size=8).digest(), "big") >> 1


def egress_key(ip: str, network: str | None = None) -> str:
    """The unit that is counted: "194.72.10.5/32" for IPv4, the /64 for IPv6.

    `network` is the address's /24 or /64 from `NetworkMap` when the caller has it.
    """
    if ":" not in ip:
        return f"{ip}/32"
    if network is not None and ":" in network:
        return network
    address = ipaddress.ip_address(ip)
    mapped = address.ipv4_mapped  # type: ignore[union-attr]
    if mapped is not None:
        return f"{mapped}/32"
    return str(ipaddress.ip_network(f"{address}/64", strict=False))


class Sighting(msgspec.Struct, gc=False):
    """One network's sketch: the bottom-k account hashes, an int while there is only one.

    Then a sorted array of 64-bit ints, 8 bytes a hash where a set of Python ints costs about
    60; a process tracks up to `max_tracked` networks, most of them with a few accounts each.
    """

    hashes: int | array  # sorted, at most SKETCH_SIZE
    first_seen: float
    last_seen: float
    dirty: bool = True  # changed since the last flush (free: the allocator rounds 40 bytes up to 48)

    def add(self, value: int) -> bool:
        """Add one account hash; True when the sketch changed."""
        hashes = self.hashes
        if type(hashes) is int:
            if hashes == value:
                return False
            self.hashes = array("q", (hashes, value) if hashes < value else (value, hashes))
            return True
        index = bisect_left(hashes, value)  # type: ignore[arg-type]
        size = len(hashes)  # type: ignore[arg-type]
        if index < size and hashes[index] == value:  # type: ignore[index]
            return False
        if size >= SKETCH_SIZE:
            if index == size:
                return False  # larger than the k smallest: not in the sketch
            hashes.pop()  # type: ignore[union-attr]
        hashes.insert(index, value)  # type: ignore[union-attr]
        return True

    def values(self) -> list[int]:
        return [self.hashes] if type(self.hashes) is int else list(self.hashes)  # type: ignore[list-item, arg-type]

    def count(self) -> int:
        return 1 if type(self.hashes) is int else len(self.hashes)  # type: ignore[arg-type]


def _sketch(values: list[int]) -> int | array:
    """The in-memory form of a sketch's hashes (as `Sighting.values` lists them)."""
    return values[0] if len(values) == 1 else array("q", sorted(values))


def estimate(hashes: list[int] | array | int) -> int:
    """Distinct accounts behind a sketch: exact below `SKETCH_SIZE`, a bottom-k estimate above."""
    if isinstance(hashes, int):
        return 1
    count = len(hashes)
    if count < SKETCH_SIZE:
        return count
    return max(count, round((SKETCH_SIZE - 1) * _MAX_HASH / (max(hashes) + 1)))


class NetworkEntry(msgspec.Struct, kw_only=True):
    """A counted network as `portal-monitor networks list` shows it."""

    network: str
    accounts: int  # distinct accounts (estimated above SKETCH_SIZE)
    first_seen: datetime
    last_seen: datetime
    shared: bool
    country: str | None = None
    place: str | None = None
    org: str | None = None


class SharedNetworksSnapshot(msgspec.Struct, array_like=True):
    entries: list[tuple[str, list[int], float, float]]
    learnt: list[str]
    clock: float


class SharedNetworks:
    """The networks learnt as shared, and the sketches they are learnt from (one per process)."""

    def __init__(
        self,
        *,
        enabled: bool = True,
        min_accounts: int = 20,
        min_span: float = 86_400.0,
        forget_after: float = 90 * 86_400.0,
        max_tracked: int = 100_000,
    ) -> None:
        if not 1 <= min_accounts <= SKETCH_SIZE:
            raise ValueError(f"min_accounts must be between 1 and {SKETCH_SIZE}")
        self.enabled = enabled
        self.min_accounts = min_accounts
        self.min_span = min_span
        self.forget_after = forget_after
        self.max_tracked = max_tracked
        self._seen: dict[str, Sighting] = {}
        self._learnt: set[str] = set()  # learnt from this process's own sightings
        self._remote: frozenset[str] = frozenset()  # learnt by the organisation (PostgreSQL)
        self._shared: set[str] = set()  # the union, what detectors read
        self._observed = 0
        self.clock = 0.0  # latest event time observed

    @classmethod
    def from_settings(cls, settings: Any) -> "SharedNetworks":
        return cls(
            enabled=settings.enabled,
            min_accounts=settings.min_accounts,
            min_span=float(settings.min_span),
            forget_after=float(settings.forget_after),
            max_tracked=settings.max_tracked,
        )

    # -- what detectors read -----------------------------------------------------------------

    def __contains__(self, key: object) -> bool:
        return key in self._shared

    def __len__(self) -> int:
        return len(self._shared)

    @property
    def learnt(self) -> frozenset[str]:
        return frozenset(self._shared)

    # -- learning ----------------------------------------------------------------------------

    def observe(self, key: str, account_id: str, at: float) -> None:
        """One successful login of `account_id` from egress network `key` at event time `at`."""
        if not self.enabled:
            return
        value = account_hash(account_id)  # 0.5 µs a login: cheaper than a cache of every account's hash
        sighting = self._seen.get(key)
        if sighting is None:
            sighting = self._seen[key] = Sighting(value, at, at)
            if len(self._seen) > self.max_tracked:
                self._evict()
        else:
            if sighting.add(value):
                sighting.dirty = True
            if at > sighting.last_seen:
                sighting.last_seen = at
            elif at < sighting.first_seen:
                sighting.first_seen = at
        if (
            key not in self._learnt
            and sighting.count() >= self.min_accounts
            and sighting.last_seen - sighting.first_seen >= self.min_span
        ):
            self._learnt.add(key)
            self._shared.add(key)
        if at > self.clock:
            self.clock = at
        self._observed += 1
        if self._observed & 4095 == 0:
            self.forget(self.clock - self.forget_after)

    def forget(self, before: float) -> int:
        """Drop networks not seen since `before` (event time); how many were dropped."""
        stale = [key for key, sighting in self._seen.items() if sighting.last_seen < before]
        for key in stale:
            del self._seen[key]
            self._learnt.discard(key)
        if stale:
            self._shared = self._learnt | self._remote
        return len(stale)

    def _evict(self) -> None:
        """Over `max_tracked`: drop the least recently seen networks not learnt, down to 90%."""
        keep = int(self.max_tracked * 0.9)
        candidates = sorted(
            (sighting.last_seen, key) for key, sighting in self._seen.items() if key not in self._learnt
        )
        for _, key in candidates[: max(0, len(self._seen) - keep)]:
            del self._seen[key]

    # -- the organisation-wide view ----------------------------------------------------------

    def set_remote(self, keys: Iterable[str]) -> None:
        """The networks learnt as shared across every process (read from PostgreSQL)."""
        self._remote = frozenset(keys)
        self._shared = self._learnt | self._remote

    def take_dirty(self) -> list[tuple[str, list[int], float, float]]:
        """Sketches changed since the last call: (network, hashes, first_seen, last_seen).

        The whole local sketch is sent: a hash it dropped is larger than k others here, so it
        cannot be among the k smallest of the union either.
        """
        rows = []
        for key, sighting in self._seen.items():
            if sighting.dirty:
                sighting.dirty = False
                rows.append((key, sighting.values(), sighting.first_seen, sighting.last_seen))
        return rows

    def restore_dirty(self, rows: list[tuple[str, list[int], float, float]]) -> None:
        """Mark again the networks a failed flush did not write."""
        for key, _, _, _ in rows:
            sighting = self._seen.get(key)
            if sighting is not None:
                sighting.dirty = True

    def entries(self, min_accounts: int = 1) -> list[NetworkEntry]:
        """Counted networks with at least `min_accounts` accounts, most accounts first."""
        found = [
            NetworkEntry(
                network=key,
                accounts=estimate(sighting.hashes),  # type: ignore[arg-type]
                first_seen=_utc(sighting.first_seen),
                last_seen=_utc(sighting.last_seen),
                shared=key in self._shared,
            )
            for key, sighting in self._seen.items()
            if sighting.count() >= min_accounts or key in self._shared
        ]
        found.sort(key=lambda entry: (-entry.accounts, entry.network))
        return found

    # -- checkpoints -------------------------------------------------------------------------

    def snapshot(self) -> SharedNetworksSnapshot:
        return SharedNetworksSnapshot(
            entries=[(key, s.values(), s.first_seen, s.last_seen) for key, s in self._seen.items()],
            learnt=sorted(self._learnt),
            clock=self.clock,
        )

    def restore(self, snapshot: SharedNetworksSnapshot | Any) -> None:
        if not isinstance(snapshot, SharedNetworksSnapshot):
            snapshot = msgspec.convert(snapshot, SharedNetworksSnapshot)
        self._seen = {
            key: Sighting(_sketch(values), first, last, dirty=False)
            for key, values, first, last in snapshot.entries
        }
        self._learnt = set(snapshot.learnt)
        self._shared = self._learnt | self._remote
        self.clock = snapshot.clock


def _utc(at: float) -> datetime:
    return datetime.fromtimestamp(at, timezone.utc)


# -- PostgreSQL: the organisation-wide sketches (asyncpg; the caller owns the pool) -------------

UPSERT = f"""
INSERT INTO shared_networks AS s (network, account_hashes, first_seen, last_seen)
VALUES ($1::cidr, $2::bigint[], to_timestamp($3), to_timestamp($4))
ON CONFLICT (network) DO UPDATE SET
    account_hashes = ARRAY(
        SELECT DISTINCT h FROM unnest(s.account_hashes || EXCLUDED.account_hashes) AS u(h)
        ORDER BY h LIMIT {SKETCH_SIZE}
    ),
    first_seen = LEAST(s.first_seen, EXCLUDED.first_seen),
    last_seen = GREATEST(s.last_seen, EXCLUDED.last_seen)
"""

LEARNT = """
SELECT network::text AS network FROM shared_networks
WHERE cardinality(account_hashes) >= $1
  AND last_seen - first_seen >= make_interval(secs => $2)
  AND last_seen >= to_timestamp($3)
"""

LIST = """
SELECT network::text AS network, account_hashes, first_seen, last_seen FROM shared_networks
WHERE cardinality(account_hashes) >= $1
ORDER BY cardinality(account_hashes) DESC, network
"""


async def apply_migration(conn: Any) -> None:
    """Create the table if it is missing (the store's migration runner applies the same file)."""
    await conn.execute(MIGRATION.read_text())


async def flush(conn: Any, shared: SharedNetworks) -> int:
    """Merge this process's new sightings into the organisation's sketches; rows written."""
    rows = shared.take_dirty()
    if not rows:
        return 0
    try:
        async with conn.transaction():
            await conn.executemany(UPSERT, rows)
            if shared.clock:
                await conn.execute(
                    "DELETE FROM shared_networks WHERE last_seen < to_timestamp($1)",
                    shared.clock - shared.forget_after,
                )
    except BaseException:
        shared.restore_dirty(rows)
        raise
    return len(rows)


async def load(conn: Any, shared: SharedNetworks) -> int:
    """Read the organisation's learnt set into `shared`; how many networks it holds."""
    since = shared.clock - shared.forget_after if shared.clock else 0.0
    records = await conn.fetch(LEARNT, shared.min_accounts, float(shared.min_span), since)
    shared.set_remote(record["network"] for record in records)
    return len(records)


async def sync(conn: Any, shared: SharedNetworks) -> int:
    """Flush then load: what the daemon runs every minute or so; the learnt set's size."""
    await flush(conn, shared)
    return await load(conn, shared)


async def list_networks(conn: Any, min_accounts: int, shared_threshold: int, min_span: float) -> list[NetworkEntry]:
    """The organisation's counted networks with at least `min_accounts` accounts."""
    records = await conn.fetch(LIST, min_accounts)
    entries = []
    for record in records:
        hashes = list(record["account_hashes"])
        first, last = record["first_seen"], record["last_seen"]
        entries.append(
            NetworkEntry(
                network=record["network"],
                accounts=estimate(hashes),
                first_seen=first,
                last_seen=last,
                shared=len(hashes) >= shared_threshold and (last - first).total_seconds() >= min_span,
            )
        )
    return entries


class SharedNetworkSettings(Section):
    """Learning organisation-shared networks (school NATs, council offices) from logins."""

    enabled: bool = True
    min_accounts: int = 20
    """Distinct accounts that must log in from one egress address (IPv4) or /64 (IPv6); at most 64."""
    min_span: Seconds = Seconds(86400)
    """...over at least this much event time, so a burst of logins from one address is not learnt."""
    forget_after: Seconds = Seconds(90 * 86400)
    max_tracked: int = 100_000
    sync_interval: Seconds = Seconds(60)
    """How often `run` merges this process's counts with the other processes' in PostgreSQL."""
