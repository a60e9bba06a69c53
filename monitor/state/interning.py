"""One shared copy of values many holders repeat (user agents, network names, packed histories).

A million sessions that name the same user agent, or accounts whose packed history is the
same bytes, hold one object instead of a million equal ones. Bounded: the table is cleared
when full, so an adversarial variety of values costs at most `limit` entries; a value seen
after a clear is simply shared from then on.
"""

from __future__ import annotations

from typing import Generic, Hashable, TypeVar

Value = TypeVar("Value", bound=Hashable)


class Interner(Generic[Value]):
    """`interner(value)`: the first equal value seen, kept while the table has room."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._copies: dict[Value, Value] = {}

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
