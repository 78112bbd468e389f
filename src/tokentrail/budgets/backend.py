"""What a budget back-end stores and the operations it makes atomic.

A budget instance in one window is a *slot*. Its counters live in *heads*: a calendar, session or run
window has one head; a rolling window has one head per bucket and counts the last `ROLLING_BUCKETS`
of them plus the current one. A head holds settled spend, the sum of live reservations and the highest
alert level already fired. Each reservation also leaves an *entry* per head with its amount and lease,
so a reservation whose process died is subtracted again once its lease has passed.

Money is counted in exact integers of 10**-24 USD (`tokentrail._money`), tokens as integers. Every
back-end takes `now` from the caller, so one injectable clock drives windows and leases alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

__all__ = [
    "BudgetBackend",
    "HeadRow",
    "ReserveOutcome",
    "SettleOutcome",
    "Slot",
    "Tally",
    "TallyRow",
]


class Slot:
    """One budget instance in one window, with the limits and alert amounts to apply to it.

    Treated as immutable (the manager caches and shares slots). A slotted class rather than a
    NamedTuple: its fields are read on every reservation, and slot attributes read fastest.
    """

    __slots__ = (
        "alert_tokens",
        "alert_units",
        "budget",
        "enforce",
        "expires_at",
        "head",
        "heads",
        "limit_tokens",
        "limit_units",
        "scope_key",
        "window_key",
    )

    def __init__(
        self,
        budget: str,
        scope_key: str,
        window_key: str,
        heads: tuple[str, ...],
        expires_at: float,
        limit_units: int | None,
        limit_tokens: int | None,
        alert_units: tuple[int, ...],
        alert_tokens: tuple[int, ...],
        enforce: bool,
    ) -> None:
        self.budget = budget
        self.scope_key = scope_key
        self.window_key = window_key
        self.heads = heads  # heads[0] takes reservations and spend; all of them count
        self.head = heads[0] if len(heads) == 1 else None  # the only head (None: a rolling window)
        self.expires_at = expires_at  # when heads[0] may be forgotten (epoch seconds)
        self.limit_units = limit_units
        self.limit_tokens = limit_tokens
        self.alert_units = alert_units  # ascending amounts at which alert level 1, 2, … is reached
        self.alert_tokens = alert_tokens
        self.enforce = enforce  # refuse a reservation that would pass a limit (action "block")

    def _fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in Slot.__slots__)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Slot) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in Slot.__slots__)
        return f"Slot({fields})"


class Tally(NamedTuple):
    """What a slot's window holds: settled spend and live reservations, in units and tokens."""

    spent_units: int = 0
    spent_tokens: int = 0
    reserved_units: int = 0
    reserved_tokens: int = 0

    def exceeds(self, slot: Slot, units: int, tokens: int) -> bool:
        """Would adding (`units`, `tokens`) pass one of `slot`'s limits?"""
        if slot.limit_units is not None and self.spent_units + self.reserved_units + units > slot.limit_units:
            return True
        return (
            slot.limit_tokens is not None
            and self.spent_tokens + self.reserved_tokens + tokens > slot.limit_tokens
        )


TallyRow = tuple[int, int, int, int]
"""A slot's window as (spent_units, spent_tokens, reserved_units, reserved_tokens): a `Tally`'s fields.
Back-ends may answer plain tuples (the in-process one does, on the hot path) or `Tally` objects."""

ReserveOutcome = tuple["int | None", tuple[TallyRow, ...]]
"""(refused, tallies): `refused` is the index of the first enforcing slot that had no room (None: reserved
everywhere); `tallies` are each slot's window before this reservation. A plain tuple: it is made per call."""

SettleOutcome = tuple[tuple[TallyRow, ...], tuple[tuple[int, ...], ...]]
"""(tallies, crossed): each slot's window after the spend, and the alert levels (0-based) it newly reached."""


class HeadRow(NamedTuple):
    """A stored head, as listed for status reports."""

    key: str
    budget: str
    scope_key: str
    window_key: str
    spent_units: int
    spent_tokens: int
    reserved_units: int
    reserved_tokens: int
    alert_level: int
    expires_at: float


@runtime_checkable
class BudgetBackend(Protocol):
    """Atomic counters for budgets. Every method that changes counters is one atomic step."""

    url: str
    blocking: bool  # True when operations wait on I/O (async callers run them in a worker thread)

    def reserve(
        self,
        reservation: str,
        slots: Sequence[Slot],
        charges: Sequence[tuple[int, int]],
        now: float,
        lease_until: float,
    ) -> ReserveOutcome:
        """Reserve `charges[i]` in `slots[i]` for every slot, or in none when an enforcing one has no room."""
        ...

    def settle(
        self,
        reservation: str | None,
        slots: Sequence[Slot],
        charges: Sequence[tuple[int, int]],
        now: float,
    ) -> SettleOutcome:
        """Drop the reservation's live entries (if any) and add the actual spend to each slot."""
        ...

    def release(self, reservation: str, slots: Sequence[Slot], now: float) -> None:
        """Drop the reservation's live entries without spending anything."""
        ...

    def read(self, slots: Sequence[Slot], now: float) -> list[Tally]:
        """Each slot's window now (expired reservations left out)."""
        ...

    def heads(self, budget: str, now: float) -> list[HeadRow]:
        """Every head of `budget` whose window has not expired."""
        ...

    def register(self, definitions: Mapping[str, Mapping[str, Any]]) -> None:
        """Store budget definitions so command-line tools can describe the counters."""
        ...

    def definitions(self) -> dict[str, dict[str, Any]]: ...

    def set_limits(self, budget: str, limits: tuple[int | None, int | None] | None) -> None:
        """Override a budget's (USD units, tokens) limits for every process; None drops the override."""
        ...

    def limits(self) -> dict[str, tuple[int | None, int | None]]: ...

    def reset(self, budget: str, scope_key: str | None = None) -> int:
        """Forget the counters (spend, reservations, alerts) of `budget`; returns how many heads went."""
        ...

    def close(self) -> None: ...


def sqlite_path(url: str) -> str:
    """The file of a sqlite:///relative.db or sqlite:////absolute.db URL (":memory:" allowed)."""
    rest = url.split(":", 1)[1]
    if rest.startswith("///"):
        return rest[3:] or ":memory:"
    if rest.startswith("//"):
        return rest[2:] or ":memory:"
    return rest or ":memory:"


def split_options(url: str, *names: str) -> tuple[str, dict[str, str]]:
    """`url` without the query parameters `names`, and their values (the rest of the URL kept as it is:
    a round trip through urllib would turn sqlite:////abs.db into sqlite://abs.db)."""
    from urllib.parse import parse_qsl, urlencode

    base, mark, query = url.partition("?")
    if not mark:
        return url, {}
    options: dict[str, str] = {}
    rest = []
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key in names:
            options[key] = value
        else:
            rest.append((key, value))
    return (f"{base}?{urlencode(rest)}" if rest else base), options
