"""One shared copy of values many holders repeat (user agents, network names, packed histories).

A million sessions that name the same user agent, or accounts whose packed history is the
same bytes, hold one object instead of a million equal ones. Bounded: the table is cleared
when full, so an adversarial variety of values costs at most `limit` entries; a value seen
after a clear is simply shared from then on.
"""

from __future__ import annotations

import sys
from typing import Generic, Hashable, TypeVar

Value = TypeVar("Value", bound=Hashable)


class Interner(Generic[Value]):
    """`interner(value)`: the first equal value seen, kept while the table has room."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._copies: dict[Value, Value] = {}
        # `share(value, value)`: the same, at C speed on a hot path, unbounded until `bound()`.
        self.share = self._copies.setdefault

    def bound(self) -> None:
        """Clear the table if `share` took it past its limit (call it now and then)."""
        if len(self._copies) >= self.limit:
            self._copies.clear()

    def __call__(self, value: Value) -> Value:
        copies = self._copies
        found = copies.get(value)
        if found is None:
            if len(copies) >= self.limit:
                copies.clear()
            found = copies[value] = value
        return found

    def __len__(self) -> int:
        return len(self._copies)


def _interned_strings_are_mortal() -> bool:
    """Whether `sys.intern` lets go of a string once nothing else holds it (CPython 3.11, 3.12.5
    on, 3.13 on; 3.12.0 to 3.12.4 kept every interned string for good). Tried once, at import:
    at most one probe string stays behind where they are immortal."""
    count = getattr(sys, "getunicodeinternedsize", None)
    if count is None:
        return sys.implementation.name == "cpython"  # before 3.12: mortal
    before = count()
    probe = sys.intern("portal-monitor interning probe " + str(id(object())))
    del probe
    return count() == before


def _as_is(text: str) -> str:
    return text


account_key = sys.intern if _interned_strings_are_mortal() else _as_is
"""One string object per account id in the process, shared by the session table, every
detector's per-account entry and the network stage: a million accounts hold one copy of each id
(about 64 bytes) instead of one per holder. Uses the interpreter's own table of interned
strings, which forgets a string when its last holder lets go, so nothing here grows with the
ids ever seen (a flood of made-up usernames costs only while they are held); where interned
strings are kept for good (CPython 3.12.0 to 3.12.4) ids are not interned."""

PUPIL_IDS_LIMIT = 262_144
"""Pupil ids a `pupil_ids()` interner shares before it starts again (a county has a few
hundred thousand pupils)."""


def pupil_ids() -> Interner[str]:
    """One copy of each pupil id the detectors keep (each pupil is linked to and viewed by many
    accounts); bounded like every `Interner`. The composition root builds one per process and
    lends it to every shard (`DetectorContext.pupil_ids`), as it does the GeoIP services."""
    return Interner[str](PUPIL_IDS_LIMIT)


def by_account(entries: dict[str, Value]) -> dict[str, Value]:
    """`entries` keyed by the shared copies of their account ids (`account_key`): for state
    loaded from a checkpoint, whose decoded ids are copies of their own."""
    return {account_key(account_id): entry for account_id, entry in entries.items()}
