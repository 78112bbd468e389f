"""Per-session totals a store keeps beside its ledger (the session list reads them without a scan).

A session's row holds its first and last call, calls, unpriced calls, exact cost of the priced calls and
the part of it not paid for tokens (`Record.non_token_units`), input and output tokens, summed call time
and its agents. Stores add a batch's change in the transaction
that writes the batch (`SessionDelta`, merged per session), keep it through `prune` (like the hourly
rollups, the row still counts pruned records) and `reprice` (the list shows recorded costs), and rebuild
the rows of the sessions a `reset` touched from what is left (`settled_span`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "SESSION_COLUMNS",
    "SESSION_SORTS",
    "SessionQuery",
    "SessionRow",
    "add_cell",
    "matches",
    "rebuilt_row",
    "settled_span",
    "sort_rows",
    "sort_value",
    "table_row",
    "table_values",
]

SESSION_SORTS = ("last", "first", "cost", "calls", "tokens", "span", "unpriced", "session")
# the columns of the SQL stores' `sessions` table
SESSION_COLUMNS = (
    "session",
    "first_ts",
    "last_ts",
    "calls",
    "unpriced",
    "cost",
    "non_token",
    "input_tokens",
    "output_tokens",
    "duration",
    "agents",
)
_HOUR_US = 3_600_000_000


@dataclass(slots=True)
class SessionRow:
    """One session's totals over all of its calls (`cost_units` sums the priced ones, `non_token_units`
    the part of that cost not paid for tokens)."""

    session: str
    calls: int = 0
    unpriced_calls: int = 0
    cost_units: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    duration_ms: float = 0.0  # summed call time of the calls that reported one
    first_us: int = 0  # timestamp of the first call (when it ended)
    last_us: int = 0
    agents: tuple[str, ...] = ()
    non_token_units: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def span_ms(self) -> float:
        """From the first call to the last, in milliseconds (0 for a single call)."""
        return (self.last_us - self.first_us) / 1000

    def merge(self, other: SessionRow) -> None:
        """Add `other` (the same session's change) to this row."""
        self.calls += other.calls
        self.unpriced_calls += other.unpriced_calls
        self.cost_units += other.cost_units
        self.non_token_units += other.non_token_units
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.duration_ms += other.duration_ms
        self.first_us = min(self.first_us, other.first_us)
        self.last_us = max(self.last_us, other.last_us)
        if other.agents and set(other.agents) - set(self.agents):
            self.agents = tuple(sorted({*self.agents, *other.agents}))


@dataclass(frozen=True, slots=True)
class SessionQuery:
    """A page of the session list a store answers: the sessions with a call in [since_us, until_us) (None:
    open) whose id or an agent contains `search` (case-folded), sorted by `sort` (ties by session id,
    ascending), `limit` of them from `offset`."""

    since_us: int | None = None
    until_us: int | None = None
    search: str | None = None
    sort: str = "last"
    descending: bool = True
    limit: int = 50
    offset: int = 0

    def __post_init__(self) -> None:
        if self.sort not in SESSION_SORTS:
            raise ValueError(f"cannot sort sessions by {self.sort!r}; known: {', '.join(SESSION_SORTS)}")


def table_row(values: Sequence[Any], agents: Iterable[str]) -> SessionRow:
    """A row of a SQL store's `sessions` table (`SESSION_COLUMNS` order), its agents decoded by the store."""
    session, first, last, calls, unpriced, cost, non_token, input_tokens, output_tokens, duration, _ = values
    return SessionRow(
        session,
        int(calls),
        int(unpriced),
        int(cost),
        int(input_tokens),
        int(output_tokens),
        float(duration),
        int(first),
        int(last),
        tuple(sorted(agents)),
        int(non_token),
    )


def table_values(row: SessionRow) -> list[Any]:
    """A session's row as a SQL store's `sessions` table holds it (`SESSION_COLUMNS` order; the cost and
    its non-token part as ints and the agents as a list, which a store may encode further)."""
    return [
        row.session,
        row.first_us,
        row.last_us,
        row.calls,
        row.unpriced_calls,
        row.cost_units,
        row.non_token_units,
        row.input_tokens,
        row.output_tokens,
        float(row.duration_ms),
        list(row.agents),
    ]


def rebuilt_row(
    session: str,
    sums: Sequence[Any],
    raw: Sequence[Any] | None,
    old: tuple[int, int] | None,
    hour_counts: Callable[[int], tuple[int, int]],
    agents: Iterable[str],
) -> SessionRow:
    """A session's row rebuilt from what a SQL store holds: `sums` from its hourly rollup (calls, unpriced
    calls, cost, its non-token part, input and output tokens, call time, first and last hour), `raw`
    (count, earliest, latest) of its raw rows (None: none), its `old` (first, last) and
    `hour_counts(hour)` (calls counted, raw rows left in that hour), asked only when pruned calls are
    counted."""
    *totals, low, high = sums  # calls first
    calls = totals[0]
    count, first, last = raw if raw is not None else (0, None, None)
    if count != calls:  # pruned calls are counted: the ends come from the end hours
        first, last = settled_span(
            old,
            None if first is None or last is None else (int(first), int(last)),
            (int(low), int(high)),
            {hour: hour_counts(hour) for hour in {int(low), int(high)}},
        )
    return table_row((session, first, last, *totals, None), agents)


def add_cell(
    found: dict[str, SessionRow],
    session: str,
    sums: tuple[int, int, int, int, int, int, float],
    span: tuple[int, int],
    agent: str | None,
) -> None:
    """Add the calls of one rollup cell (one agent's priced or unpriced calls of a session) to `found`:
    `sums` are (calls, unpriced calls, cost, its non-token part, input tokens, output tokens, call time),
    `span` their first and last call."""
    calls, unpriced, cost, non_token, input_tokens, output_tokens, duration = sums
    change = SessionRow(
        session,
        calls,
        unpriced,
        cost,
        input_tokens,
        output_tokens,
        duration,
        *span,
        () if agent is None else (agent,),
        non_token,
    )
    row = found.get(session)
    if row is None:
        found[session] = change
    else:
        row.merge(change)


def matches(session: str, agents: Iterable[str], search: str | None) -> bool:
    """Whether the session id or one of its agents contains `search` (case-folded); no search: all."""
    if not search:
        return True
    needle = search.casefold()
    return needle in session.casefold() or any(needle in agent.casefold() for agent in agents)


def sort_value(row: SessionRow, sort: str) -> Any:
    """The value of `row` a sort key orders by."""
    if sort == "last":
        return row.last_us
    if sort == "first":
        return row.first_us
    if sort == "cost":
        return row.cost_units
    if sort == "calls":
        return row.calls
    if sort == "tokens":
        return row.total_tokens
    if sort == "span":
        return row.last_us - row.first_us
    if sort == "unpriced":
        return row.unpriced_calls
    if sort == "session":
        return row.session
    raise ValueError(f"cannot sort sessions by {sort!r}; known: {', '.join(SESSION_SORTS)}")


def sort_rows(rows: list[SessionRow], sort: str, descending: bool) -> None:
    """Sort in place by `sort`, ties broken by session id (ascending) so pages never overlap."""
    rows.sort(key=lambda row: row.session)
    rows.sort(key=lambda row: sort_value(row, sort), reverse=descending)


def settled_span(
    old: tuple[int, int] | None,
    raw: tuple[int, int] | None,
    hours: tuple[int, int],
    hour_counts: dict[int, tuple[int, int]],
) -> tuple[int, int]:
    """A session's first and last call after a `reset` removed some of its calls.

    `old` is its (first, last) before, `raw` the (earliest, latest) of its raw rows left (None: none),
    `hours` its (first, last) hour the hourly rollup still counts, `hour_counts` the (calls counted,
    raw rows left) of those two hours. Where raw rows cover an end (no pruned call is counted in that
    hour, or a pruned-from hour holds the old end), the answer is exact; an end only pruned calls
    make, whose call the reset removed, becomes the bound of its hour (the call itself is gone)."""
    first_hour, last_hour = hours
    first = _end(old and old[0], raw and raw[0], first_hour, hour_counts[first_hour], earliest=True)
    last = _end(old and old[1], raw and raw[1], last_hour, hour_counts[last_hour], earliest=False)
    return first, last


def _end(old: int | None, raw: int | None, hour: int, counts: tuple[int, int], earliest: bool) -> int:
    calls, rows = counts
    raw_in_hour = raw is not None and raw // _HOUR_US == hour
    if calls == rows and raw_in_hour:  # every call counted in the end hour is a raw row
        assert raw is not None
        return raw
    # pruned calls are counted in the end hour: the old end, if it lies there (a pruned call is removed
    # only with its whole hour, so it is still there), else the hour's bound
    if old is not None and old // _HOUR_US == hour:
        if raw_in_hour and raw is not None:
            return min(old, raw) if earliest else max(old, raw)
        return old
    if raw_in_hour and raw is not None:
        return raw  # the pruned calls of the hour may lie beyond it; the raw row is the best known
    return hour * _HOUR_US if earliest else (hour + 1) * _HOUR_US - 1
