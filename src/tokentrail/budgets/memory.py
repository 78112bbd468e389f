"""In-process budget counters behind one lock: exact under threads and asyncio, gone with the process.

The rules are those of `_engine` (shared by the SQL back-ends), written directly against dictionaries
because this is the hot path of a budget check.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from tokentrail.budgets._engine import NO_LEASE, Head, level_of
from tokentrail.budgets.backend import HeadRow, ReserveOutcome, SettleOutcome, Slot, Tally

__all__ = ["MemoryBackend"]

_SWEEP_SECONDS = 60.0
_EMPTY = Tally()


def _tally(values: tuple[int, int, int, int]) -> Tally:
    return tuple.__new__(Tally, values)  # NamedTuple's own __new__ adds a Python-level call


class MemoryBackend:
    """Counters in dictionaries; every operation holds one `threading.Lock` for a few microseconds."""

    url = "memory://"
    blocking = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._heads: dict[str, Head] = {}
        self._entries: dict[str, list[tuple[str, int, int]]] = {}  # reservation -> (head, units, tokens)
        self._leases: dict[str, dict[str, float]] = {}  # head -> {reservation: lease}; the live entries
        self._definitions: dict[str, dict[str, Any]] = {}
        self._limits: dict[str, tuple[int | None, int | None]] = {}
        self._next_sweep = 0.0

    # -- counters --------------------------------------------------------------------------------------

    def reserve(
        self,
        reservation: str,
        slots: Sequence[Slot],
        charges: Sequence[tuple[int, int]],
        now: float,
        lease_until: float,
    ) -> ReserveOutcome:
        heads = self._heads
        with self._lock:
            if now >= self._next_sweep:
                self._sweep(now)
            seen = []
            refused = None
            for index, slot in enumerate(slots):
                if len(slot.heads) == 1:  # calendar, session and run windows: one head, read inline
                    head = heads.get(slot.heads[0])
                    if head is None:
                        window = _EMPTY
                    else:
                        if head.next_lease <= now:
                            self._purge(head, now)
                        window = _tally(
                            (head.spent_units, head.spent_tokens, head.reserved_units, head.reserved_tokens)
                        )
                else:
                    window = self._window(slot, now)
                seen.append(window)
                if refused is None and slot.enforce:
                    units, tokens = charges[index]
                    limit = slot.limit_units
                    if limit is not None and window[0] + window[2] + units > limit:
                        refused = index
                    limit = slot.limit_tokens
                    if limit is not None and window[1] + window[3] + tokens > limit:
                        refused = index
            if refused is not None:
                return ReserveOutcome(refused, tuple(seen))
            held = []
            for slot, (units, tokens) in zip(slots, charges, strict=True):
                head = self._head(slot)
                if units or tokens:
                    head.reserved_units += units
                    head.reserved_tokens += tokens
                    if lease_until < head.next_lease:
                        head.next_lease = lease_until
                    held.append((head.key, units, tokens))
                    leases = self._leases.get(head.key)
                    if leases is None:
                        leases = self._leases[head.key] = {}
                    leases[reservation] = lease_until
            if held:
                self._entries[reservation] = held
            return ReserveOutcome(None, tuple(seen))

    def settle(
        self,
        reservation: str | None,
        slots: Sequence[Slot],
        charges: Sequence[tuple[int, int]],
        now: float,
    ) -> SettleOutcome:
        with self._lock:
            if reservation is not None:
                self._drop(reservation)
            after = []
            crossed: list[tuple[int, ...]] = []
            for slot, (units, tokens) in zip(slots, charges, strict=True):
                head = self._head(slot)
                head.spent_units += units
                head.spent_tokens += tokens
                if len(slot.heads) == 1:
                    window = _tally(
                        (head.spent_units, head.spent_tokens, head.reserved_units, head.reserved_tokens)
                    )
                    fired = head.alert_level
                else:
                    window = self._window(slot, None)
                    fired = max(h.alert_level for h in map(self._heads.get, slot.heads) if h is not None)
                after.append(window)
                level = level_of(slot, window[0], window[1])
                if level > fired:
                    head.alert_level = level
                    crossed.append(tuple(range(fired, level)))
                else:
                    crossed.append(())
            return SettleOutcome(tuple(after), tuple(crossed))

    def release(self, reservation: str, slots: Sequence[Slot], now: float) -> None:
        with self._lock:
            self._drop(reservation)

    def read(self, slots: Sequence[Slot], now: float) -> list[Tally]:
        with self._lock:
            return [self._window(slot, now) for slot in slots]

    def heads(self, budget: str, now: float) -> list[HeadRow]:
        with self._lock:
            rows = []
            for head in self._heads.values():
                if head.budget == budget and head.expires_at > now:
                    if head.next_lease <= now:
                        self._purge(head, now)
                    rows.append(head.row())
            return rows

    # -- the rules, with the lock held ------------------------------------------------------------------------

    def _head(self, slot: Slot) -> Head:
        key = slot.heads[0]
        head = self._heads.get(key)
        if head is None:
            head = self._heads[key] = Head(key, slot.budget, slot.scope_key, slot.window_key, slot.expires_at)
        elif head.expires_at < slot.expires_at:
            head.expires_at = slot.expires_at
        return head

    def _window(self, slot: Slot, now: float | None) -> Tally:
        """What the slot's heads hold, after dropping leases that passed `now` (None: keep them)."""
        heads = self._heads
        keys = slot.heads
        if len(keys) == 1:
            head = heads.get(keys[0])
            if head is None:
                return _EMPTY
            if now is not None and head.next_lease <= now:
                self._purge(head, now)
            return Tally(head.spent_units, head.spent_tokens, head.reserved_units, head.reserved_tokens)
        spent_units = spent_tokens = reserved_units = reserved_tokens = 0
        for key in keys:
            found = heads.get(key)
            if found is None:
                continue
            if now is not None and found.next_lease <= now:
                self._purge(found, now)
            spent_units += found.spent_units
            spent_tokens += found.spent_tokens
            reserved_units += found.reserved_units
            reserved_tokens += found.reserved_tokens
        return Tally(spent_units, spent_tokens, reserved_units, reserved_tokens)

    def _purge(self, head: Head, now: float) -> None:
        """Give back what reservations whose lease passed still hold in `head`."""
        leases = self._leases.get(head.key)
        if leases:
            for reservation in [r for r, lease in leases.items() if lease <= now]:
                del leases[reservation]
                kept = []
                for entry in self._entries.get(reservation, ()):
                    if entry[0] == head.key:
                        head.reserved_units -= entry[1]
                        head.reserved_tokens -= entry[2]
                    else:
                        kept.append(entry)
                if kept:
                    self._entries[reservation] = kept
                else:
                    self._entries.pop(reservation, None)
        head.next_lease = min(leases.values()) if leases else NO_LEASE

    def _drop(self, reservation: str) -> None:
        """Give back what the reservation still holds (entries whose lease was purged hold nothing)."""
        entries = self._entries.pop(reservation, None)
        if not entries:
            return
        for key, units, tokens in entries:
            leases = self._leases.get(key)
            if leases is None or leases.pop(reservation, None) is None:
                continue
            head = self._heads.get(key)
            if head is not None:
                head.reserved_units -= units
                head.reserved_tokens -= tokens

    # -- definitions and operator actions ---------------------------------------------------------------

    def register(self, definitions: Mapping[str, Mapping[str, Any]]) -> None:
        with self._lock:
            for name, definition in definitions.items():
                self._definitions[name] = dict(definition)

    def definitions(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._definitions)

    def set_limits(self, budget: str, limits: tuple[int | None, int | None] | None) -> None:
        with self._lock:
            if limits is None:
                self._limits.pop(budget, None)
            else:
                self._limits[budget] = limits

    def limits(self) -> dict[str, tuple[int | None, int | None]]:
        with self._lock:
            return dict(self._limits)

    def reset(self, budget: str, scope_key: str | None = None) -> int:
        with self._lock:
            doomed = [
                key
                for key, head in self._heads.items()
                if head.budget == budget and (scope_key is None or head.scope_key == scope_key)
            ]
            for key in doomed:
                self._forget(key)
            return len(doomed)

    def close(self) -> None:
        """Nothing to close: the counters live as long as the object."""

    # -- housekeeping ---------------------------------------------------------------------------------------

    def _forget(self, key: str) -> None:
        self._heads.pop(key, None)
        for reservation in self._leases.pop(key, {}):
            kept = [entry for entry in self._entries.get(reservation, ()) if entry[0] != key]
            if kept:
                self._entries[reservation] = kept
            else:
                self._entries.pop(reservation, None)

    def _sweep(self, now: float) -> None:
        """Forget heads whose window has ended (their last settlements had a grace period to land)."""
        self._next_sweep = now + _SWEEP_SECONDS
        for key in [key for key, head in self._heads.items() if head.expires_at <= now]:
            self._forget(key)
