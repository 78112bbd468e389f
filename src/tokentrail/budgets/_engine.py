"""The budget arithmetic shared by the memory, SQLite and Postgres back-ends.

Each back-end supplies a transaction (`Txn`) that locks heads and stores entries; the functions here
decide, inside that transaction, whether a reservation fits, what settling changes and which alert
levels are newly reached. The Redis back-end runs the same rules in Lua.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from tokentrail.budgets.backend import HeadRow, ReserveOutcome, SettleOutcome, Slot, Tally

__all__ = ["Head", "Txn", "level_of", "release", "reserve", "settle", "tallies"]

NO_LEASE = math.inf


class Head:
    """One stored counter row, loaded and locked for the length of a transaction."""

    __slots__ = (
        "alert_level",
        "budget",
        "dirty",
        "expires_at",
        "key",
        "next_lease",
        "reserved_tokens",
        "reserved_units",
        "scope_key",
        "spent_tokens",
        "spent_units",
        "window_key",
    )

    def __init__(
        self,
        key: str,
        budget: str,
        scope_key: str,
        window_key: str,
        expires_at: float,
        spent_units: int = 0,
        spent_tokens: int = 0,
        reserved_units: int = 0,
        reserved_tokens: int = 0,
        alert_level: int = 0,
        next_lease: float = NO_LEASE,
        dirty: bool = False,
    ) -> None:
        self.key = key
        self.budget = budget
        self.scope_key = scope_key
        self.window_key = window_key
        self.expires_at = expires_at
        self.spent_units = spent_units
        self.spent_tokens = spent_tokens
        self.reserved_units = reserved_units
        self.reserved_tokens = reserved_tokens
        self.alert_level = alert_level
        self.next_lease = next_lease
        self.dirty = dirty

    def row(self) -> HeadRow:
        return HeadRow(
            self.key,
            self.budget,
            self.scope_key,
            self.window_key,
            self.spent_units,
            self.spent_tokens,
            self.reserved_units,
            self.reserved_tokens,
            self.alert_level,
            self.expires_at,
        )


class Txn(Protocol):
    """What the shared rules need from a back-end inside one atomic transaction."""

    def lock(self, slots: Sequence[Slot]) -> dict[str, Head]:
        """Every head the slots name, locked; missing ones built fresh (saved only if marked dirty)."""
        ...

    def take_expired(self, heads: Sequence[Head], now: float) -> Iterable[tuple[str, int, int]]:
        """Delete the entries of `heads` whose lease has passed: (head, units, tokens) of each."""
        ...

    def next_lease(self, head: str) -> float:
        """The earliest lease among `head`'s remaining entries (`NO_LEASE` when none)."""
        ...

    def add_entries(
        self, reservation: str, entries: Sequence[tuple[str, int, int]], lease_until: float
    ) -> None:
        """Record the reservation's amount in each head: (head, units, tokens)."""
        ...

    def pop_entries(self, reservation: str) -> Iterable[tuple[str, int, int]]:
        """Delete and return the reservation's live entries."""
        ...

    def save(self, heads: Iterable[Head]) -> None:
        """Write back the heads marked dirty."""
        ...


def head_from_row(row: Sequence[Any]) -> Head:
    """A `Head` from a stored counter row (the column order the SQL back-ends select)."""
    return Head(
        row[0],
        row[1],
        row[2],
        row[3],
        float(row[10]),
        int(row[4]),
        int(row[5]),
        int(row[6]),
        int(row[7]),
        int(row[8]),
        NO_LEASE if row[9] is None else float(row[9]),
    )


def tally(slot: Slot, heads: dict[str, Head]) -> Tally:
    if len(slot.heads) == 1:
        head = heads.get(slot.heads[0])
        if head is None:
            return Tally()
        return Tally(head.spent_units, head.spent_tokens, head.reserved_units, head.reserved_tokens)
    spent_units = spent_tokens = reserved_units = reserved_tokens = 0
    for key in slot.heads:
        found = heads.get(key)
        if found is not None:
            spent_units += found.spent_units
            spent_tokens += found.spent_tokens
            reserved_units += found.reserved_units
            reserved_tokens += found.reserved_tokens
    return Tally(spent_units, spent_tokens, reserved_units, reserved_tokens)


def tallies(txn: Txn, slots: Sequence[Slot], now: float) -> list[Tally]:
    heads = txn.lock(slots)
    _purge(txn, heads, now)
    txn.save(heads.values())
    return [tally(slot, heads) for slot in slots]


def level_of(slot: Slot, spent_units: int, spent_tokens: int) -> int:
    """How many alert levels the settled spend has reached (an amount of 0 needs some spend)."""
    level = 0
    for amount in slot.alert_units:
        if spent_units < amount or spent_units == 0:
            break
        level += 1
    tokens_level = 0
    for amount in slot.alert_tokens:
        if spent_tokens < amount or spent_tokens == 0:
            break
        tokens_level += 1
    return max(level, tokens_level)


def _purge(txn: Txn, heads: dict[str, Head], now: float) -> None:
    due = [head for head in heads.values() if head.next_lease <= now]
    if not due:
        return
    for key, units, tokens in txn.take_expired(due, now):
        head = heads[key]
        head.reserved_units -= units
        head.reserved_tokens -= tokens
    for head in due:
        head.next_lease = txn.next_lease(head.key)
        head.dirty = True


def reserve(
    txn: Txn,
    reservation: str,
    slots: Sequence[Slot],
    charges: Sequence[tuple[int, int]],
    now: float,
    lease_until: float,
) -> ReserveOutcome:
    heads = txn.lock(slots)
    _purge(txn, heads, now)
    seen = []
    refused = None
    for index, slot in enumerate(slots):
        window = tally(slot, heads)
        seen.append(window)
        if refused is None and slot.enforce:
            units, tokens = charges[index]
            if window.exceeds(slot, units, tokens):
                refused = index
    if refused is not None:
        txn.save(heads.values())  # expired leases purged above stay purged
        return (refused, tuple(seen))
    entries = []
    for slot, (units, tokens) in zip(slots, charges, strict=True):
        head = heads[slot.heads[0]]
        if head.expires_at < slot.expires_at:
            head.expires_at = slot.expires_at
            head.dirty = True
        if units or tokens:
            head.reserved_units += units
            head.reserved_tokens += tokens
            if lease_until < head.next_lease:
                head.next_lease = lease_until
            head.dirty = True
            entries.append((head.key, units, tokens))
    if entries:
        txn.add_entries(reservation, entries, lease_until)
    txn.save(heads.values())
    return (None, tuple(seen))


def settle(
    txn: Txn,
    reservation: str | None,
    slots: Sequence[Slot],
    charges: Sequence[tuple[int, int]],
    now: float,
) -> SettleOutcome:
    heads = txn.lock(slots)
    if reservation is not None:
        _drop_entries(txn, reservation, heads)
    after = []
    crossed = []
    for slot, (units, tokens) in zip(slots, charges, strict=True):
        head = heads[slot.heads[0]]
        head.spent_units += units
        head.spent_tokens += tokens
        if head.expires_at < slot.expires_at:
            head.expires_at = slot.expires_at
        head.dirty = True
        window = tally(slot, heads)
        after.append(window)
        fired = max(heads[key].alert_level for key in slot.heads if key in heads)
        level = level_of(slot, window.spent_units, window.spent_tokens)
        if level > fired:
            head.alert_level = level
            crossed.append(tuple(range(fired, level)))
        else:
            crossed.append(())
    txn.save(heads.values())
    return (tuple(after), tuple(crossed))


def release(txn: Txn, reservation: str, slots: Sequence[Slot]) -> None:
    heads = txn.lock(slots)
    _drop_entries(txn, reservation, heads)
    txn.save(heads.values())


def _drop_entries(txn: Txn, reservation: str, heads: dict[str, Head]) -> None:
    for key, units, tokens in txn.pop_entries(reservation):
        head = heads.get(key)
        if head is None:  # pragma: no cover - entries are only made in heads the slots name
            continue
        head.reserved_units -= units
        head.reserved_tokens -= tokens
        head.dirty = True
