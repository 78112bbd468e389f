"""In-process budget counters behind one lock: exact under threads and asyncio, gone with the process.

The rules are those of `_engine` (shared by the SQL back-ends), written directly against dictionaries
because this is the hot path of a budget check. Each head keeps its live reservations beside its
counters (reservation -> units, tokens, lease), so settling touches only the heads the slots name.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from tokentrail.budgets._engine import NO_LEASE, Head, level_of
from tokentrail.budgets.backend import HeadRow, ReserveOutcome, SettleOutcome, Slot, Tally, TallyRow

__all__ = ["MemoryBackend"]

_SWEEP_SECONDS = 60.0
_EMPTY = (0, 0, 0, 0)
_NO_CROSSING: tuple[int, ...] = ()
_NOT_CROSSED = (_NO_CROSSING,)


class _Head(Head):
    """A head with its live reservations: reservation id -> (units, tokens, lease)."""

    __slots__ = ("live",)

    def __init__(self, slot: Slot) -> None:
        super().__init__(slot.heads[0], slot.budget, slot.scope_key, slot.window_key, slot.expires_at)
        self.live: dict[str, tuple[int, int, float]] = {}


class MemoryBackend:
    """Counters in dictionaries; every operation holds one `threading.Lock` for a few microseconds."""

    url = "memory://"
    blocking = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._heads: dict[str, _Head] = {}
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
            if len(slots) == 1 and (key := (only := slots[0]).head) is not None:  # one budget, one head
                head = heads.get(key)
                units, tokens = charges[0]
                if head is None:
                    if only.enforce and _exceeds(only, _EMPTY, charges[0]):
                        return (0, (_EMPTY,))
                    head = heads[key] = _Head(only)
                elif head.next_lease <= now:
                    _purge(head, now)
                spent_units = head.spent_units
                spent_tokens = head.spent_tokens
                reserved_units = head.reserved_units
                reserved_tokens = head.reserved_tokens
                window = (spent_units, spent_tokens, reserved_units, reserved_tokens)
                if only.enforce:
                    limit = only.limit_units
                    if limit is not None and spent_units + reserved_units + units > limit:
                        return (0, (window,))
                    limit = only.limit_tokens
                    if limit is not None and spent_tokens + reserved_tokens + tokens > limit:
                        return (0, (window,))
                if head.expires_at < only.expires_at:
                    head.expires_at = only.expires_at
                if units or tokens:
                    head.reserved_units = reserved_units + units
                    head.reserved_tokens = reserved_tokens + tokens
                    if lease_until < head.next_lease:
                        head.next_lease = lease_until
                    head.live[reservation] = (units, tokens, lease_until)
                return (None, (window,))
            return self._reserve_many(reservation, slots, charges, now, lease_until)

    def _reserve_many(
        self,
        reservation: str,
        slots: Sequence[Slot],
        charges: Sequence[tuple[int, int]],
        now: float,
        lease_until: float,
    ) -> ReserveOutcome:
        """`reserve` for several budgets or a rolling window (lock held): all or none."""
        heads = self._heads
        seen = []
        refused = None
        for index, slot in enumerate(slots):
            window = self._window(slot, now)
            seen.append(window)
            if refused is None and slot.enforce and _exceeds(slot, window, charges[index]):
                refused = index
        if refused is not None:
            return (refused, tuple(seen))
        for slot, (units, tokens) in zip(slots, charges, strict=True):
            key = slot.heads[0]
            head = heads.get(key)
            if head is None:
                head = heads[key] = _Head(slot)
            elif head.expires_at < slot.expires_at:
                head.expires_at = slot.expires_at
            if units or tokens:
                head.reserved_units += units
                head.reserved_tokens += tokens
                if lease_until < head.next_lease:
                    head.next_lease = lease_until
                held = head.live.get(reservation)
                if held is not None:  # two slots on one head (never made by the manager): add up
                    units += held[0]
                    tokens += held[1]
                head.live[reservation] = (units, tokens, lease_until)
        return (None, tuple(seen))

    def settle(
        self,
        reservation: str | None,
        slots: Sequence[Slot],
        charges: Sequence[tuple[int, int]],
        now: float,
    ) -> SettleOutcome:
        heads = self._heads
        with self._lock:
            if len(slots) != 1 or (key := (only := slots[0]).head) is None:
                return self._settle_many(reservation, slots, charges)
            # the usual call: one budget, one head
            head = heads.get(key)
            if head is None:
                head = heads[key] = _Head(only)
            elif reservation is not None:
                held = head.live.pop(reservation, None)
                if held is not None:
                    head.reserved_units -= held[0]
                    head.reserved_tokens -= held[1]
            if head.expires_at < only.expires_at:
                head.expires_at = only.expires_at
            units, tokens = charges[0]
            spent_units = head.spent_units = head.spent_units + units
            spent_tokens = head.spent_tokens = head.spent_tokens + tokens
            window = (spent_units, spent_tokens, head.reserved_units, head.reserved_tokens)
            fired = head.alert_level
            alerts = only.alert_units  # `_reaches`, inline: this runs on every call
            if (fired < len(alerts) and spent_units and spent_units >= alerts[fired]) or (
                fired < len(only.alert_tokens) and spent_tokens and spent_tokens >= only.alert_tokens[fired]
            ):
                level = head.alert_level = level_of(only, spent_units, spent_tokens)
                return ((window,), (tuple(range(fired, level)),))
            return ((window,), _NOT_CROSSED)

    def _settle_many(
        self, reservation: str | None, slots: Sequence[Slot], charges: Sequence[tuple[int, int]]
    ) -> SettleOutcome:
        """`settle` for several budgets or a rolling window (lock held)."""
        heads = self._heads
        if reservation is not None:
            self._drop(reservation, slots)
        after = []
        crossed = []
        for slot, (units, tokens) in zip(slots, charges, strict=True):
            key = slot.heads[0]
            head = heads.get(key)
            if head is None:
                head = heads[key] = _Head(slot)
            elif head.expires_at < slot.expires_at:
                head.expires_at = slot.expires_at
            head.spent_units += units
            head.spent_tokens += tokens
            window = self._window(slot, None)
            after.append(window)
            fired = max(h.alert_level for h in map(heads.get, slot.heads) if h is not None)
            if _reaches(slot, fired, window[0], window[1]):
                level = head.alert_level = level_of(slot, window[0], window[1])
                crossed.append(tuple(range(fired, level)))
            else:
                crossed.append(_NO_CROSSING)
        return (tuple(after), tuple(crossed))

    def release(self, reservation: str, slots: Sequence[Slot], now: float) -> None:
        with self._lock:
            self._drop(reservation, slots)

    def read(self, slots: Sequence[Slot], now: float) -> list[Tally]:
        with self._lock:
            return [Tally._make(self._window(slot, now)) for slot in slots]

    def heads(self, budget: str, now: float) -> list[HeadRow]:
        with self._lock:
            rows = []
            for head in self._heads.values():
                if head.budget == budget and head.expires_at > now:
                    if head.next_lease <= now:
                        _purge(head, now)
                    rows.append(head.row())
            return rows

    # -- the rules, with the lock held ------------------------------------------------------------------------

    def _window(self, slot: Slot, now: float | None) -> TallyRow:
        """What the slot's heads hold, after dropping leases that passed `now` (None: keep them)."""
        heads = self._heads
        spent_units = spent_tokens = reserved_units = reserved_tokens = 0
        for key in slot.heads:
            found = heads.get(key)
            if found is None:
                continue
            if now is not None and found.next_lease <= now:
                _purge(found, now)
            spent_units += found.spent_units
            spent_tokens += found.spent_tokens
            reserved_units += found.reserved_units
            reserved_tokens += found.reserved_tokens
        return (spent_units, spent_tokens, reserved_units, reserved_tokens)

    def _drop(self, reservation: str, slots: Sequence[Slot]) -> None:
        """Give back what the reservation still holds (a lease that was purged holds nothing)."""
        heads = self._heads
        for slot in slots:
            head = heads.get(slot.heads[0])
            if head is None:
                continue
            held = head.live.pop(reservation, None)
            if held is not None:
                head.reserved_units -= held[0]
                head.reserved_tokens -= held[1]

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
                del self._heads[key]
            return len(doomed)

    def close(self) -> None:
        """Nothing to close: the counters live as long as the object."""

    # -- housekeeping ---------------------------------------------------------------------------------------

    def _sweep(self, now: float) -> None:
        """Forget heads whose window has ended (their last settlements had a grace period to land)."""
        self._next_sweep = now + _SWEEP_SECONDS
        for key in [key for key, head in self._heads.items() if head.expires_at <= now]:
            del self._heads[key]


def _exceeds(slot: Slot, window: TallyRow, charge: tuple[int, int]) -> bool:
    limit = slot.limit_units
    if limit is not None and window[0] + window[2] + charge[0] > limit:
        return True
    limit = slot.limit_tokens
    return limit is not None and window[1] + window[3] + charge[1] > limit


def _reaches(slot: Slot, fired: int, spent_units: int, spent_tokens: int) -> bool:
    """Has the spend reached an alert level above `fired`? (Amounts ascend: check the next one only.)"""
    alerts = slot.alert_units
    if fired < len(alerts) and spent_units and spent_units >= alerts[fired]:
        return True
    alerts = slot.alert_tokens
    return fired < len(alerts) and spent_tokens != 0 and spent_tokens >= alerts[fired]


def _purge(head: _Head, now: float) -> None:
    """Give back what reservations whose lease passed still hold in `head`."""
    live = head.live
    for reservation in [r for r, (_, _, lease) in live.items() if lease <= now]:
        units, tokens, _lease = live.pop(reservation)
        head.reserved_units -= units
        head.reserved_tokens -= tokens
    head.next_lease = min((lease for _, _, lease in live.values()), default=NO_LEASE)
