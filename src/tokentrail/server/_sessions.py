"""The session list: one row per session (cost and its part not paid for tokens, calls, tokens, span,
agents, unpriced calls, first and last call), searched, sorted and paged.

A session is listed when one of its calls falls in the window; its figures cover all of its calls. A store
that keeps a per-session rollup answers through its `sessions(...)` method (see `SessionSource`); any other
store is read through `summary` by (session, agent, hour), with the exact first and last call read from the
raw records of the hours that decide the page.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from tokentrail._money import units_to_decimal
from tokentrail._record import to_timestamp_us
from tokentrail.stores._session_rows import SESSION_SORTS as _SORTS
from tokentrail.stores._session_rows import SessionQuery, SessionRow, matches, sort_rows, sort_value

if TYPE_CHECKING:
    from tokentrail._record import Record
    from tokentrail.tracker import Tracker

__all__ = [
    "SESSION_FIELDS",
    "SORT_KEYS",
    "SessionListing",
    "SessionPage",
    "SessionRow",
    "SessionSource",
    "SortKey",
    "list_sessions",
    "session_row_view",
    "sort_rows",
]

SortKey = Literal["last", "first", "cost", "calls", "tokens", "span", "unpriced", "session"]
SORT_KEYS: tuple[SortKey, ...] = ("last", "first", "cost", "calls", "tokens", "span", "unpriced", "session")
assert SORT_KEYS == _SORTS
_HOUR_US = 3_600_000_000


@dataclass(frozen=True, slots=True)
class SessionListing:
    """What the list shows: a window ([since, until), None open), a search text, a sort and a page."""

    since: datetime | None = None
    until: datetime | None = None
    search: str | None = None
    sort: SortKey = "last"
    descending: bool = True
    limit: int = 50
    offset: int = 0


@dataclass(frozen=True, slots=True)
class SessionPage:
    """One page of the list and how many sessions matched in all."""

    total: int
    rows: list[SessionRow] = field(default_factory=list)


@runtime_checkable
class SessionSource(Protocol):
    """A store that answers the session list itself (a per-session rollup), without a full scan."""

    def sessions(self, asked: SessionQuery) -> tuple[int, list[SessionRow]]: ...


def _store_of(tracker: Tracker) -> object:
    store: object = tracker.store
    return getattr(store, "inner", store)  # a ReadOnlyStore answers through the store it wraps


def list_sessions(tracker: Tracker, listing: SessionListing) -> SessionPage:
    """The page of sessions `listing` asks for."""
    store = _store_of(tracker)
    since_us = None if listing.since is None else to_timestamp_us(listing.since)
    until_us = None if listing.until is None else to_timestamp_us(listing.until)
    if isinstance(store, SessionSource):
        tracker.flush()
        asked = SessionQuery(
            since_us,
            until_us,
            listing.search,
            listing.sort,
            listing.descending,
            listing.limit,
            listing.offset,
        )
        total, rows = store.sessions(asked)
        return SessionPage(total, rows)
    return _from_summaries(tracker, listing)


def _matches(row: SessionRow, search: str | None) -> bool:
    return matches(row.session, row.agents, search)


def _from_summaries(tracker: Tracker, listing: SessionListing) -> SessionPage:
    """The list from the store's summaries: exact totals, first and last call refined from raw records."""
    if listing.since is not None or listing.until is not None:
        in_window = tracker.summary(("session",), listing.since, listing.until)
        active = {row.group["session"] for row in in_window}
        active.discard(None)
    else:
        active = None
    found: dict[str, SessionRow] = {}
    agents: dict[str, set[str]] = {}
    for summary in tracker.summary(("session", "agent", "hour")):
        name = summary.group["session"]
        if name is None or (active is not None and name not in active):
            continue
        key = str(name)
        hour = summary.group["hour"]
        assert isinstance(hour, datetime)
        at = to_timestamp_us(hour)
        row = found.get(key)
        if row is None:
            row = found[key] = SessionRow(key, first_us=at, last_us=at)
            agents[key] = set()
        row.calls += summary.calls
        row.unpriced_calls += summary.unpriced_calls
        row.cost_units += summary.cost_units
        row.non_token_units += summary.non_token_cost_units
        row.input_tokens += summary.usage.input_tokens
        row.output_tokens += summary.usage.output_tokens
        row.duration_ms += summary.duration_ms
        row.first_us = min(row.first_us, at)  # hour starts for now: refined below
        row.last_us = max(row.last_us, at)
        agent = summary.group["agent"]
        if agent is not None:
            agents[key].add(str(agent))
    rows = []
    for key, row in found.items():
        row.agents = tuple(sorted(agents[key]))
        if _matches(row, listing.search):
            rows.append(row)
    sort_rows(rows, listing.sort, listing.descending)
    end = listing.offset + listing.limit
    refined: set[str] = set()
    if listing.sort in ("last", "first", "span") and rows:
        # ordered by hour so far: rows in the hour the page ends in may still move past each other
        decide = rows
        if listing.sort != "span":
            boundary = sort_value(rows[min(end, len(rows)) - 1], listing.sort) // _HOUR_US
            decide = [
                row
                for row in rows
                if (sort_value(row, listing.sort) // _HOUR_US >= boundary) == listing.descending
                or sort_value(row, listing.sort) // _HOUR_US == boundary
            ]
        refined = _refine(tracker, decide)
        sort_rows(rows, listing.sort, listing.descending)
    page = rows[listing.offset : end]
    _refine(tracker, [row for row in page if row.session not in refined])
    return SessionPage(len(rows), page)


def _refine(tracker: Tracker, rows: Sequence[SessionRow]) -> set[str]:
    """Replace the hour starts in `rows` by the exact first and last call, read from the records of those
    hours only; returns the sessions refined."""
    hours: dict[int, set[str]] = {}
    for row in rows:
        hours.setdefault(row.first_us // _HOUR_US, set()).add(row.session)
        hours.setdefault(row.last_us // _HOUR_US, set()).add(row.session)
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for hour, names in hours.items():
        start = datetime.fromtimestamp(hour * 3600, timezone.utc)
        end = datetime.fromtimestamp((hour + 1) * 3600, timezone.utc)
        for record in tracker.history(start, end, session=sorted(names)):
            name = record.session
            if name is None:
                continue
            at = record.timestamp_us
            first[name] = min(first.get(name, at), at)
            last[name] = max(last.get(name, at), at)
    for row in rows:
        if row.session in first:
            row.first_us = first[row.session]
            row.last_us = last[row.session]
    return {row.session for row in rows}


def _iso(timestamp_us: int) -> str:
    return (
        datetime.fromtimestamp(timestamp_us // 1_000_000, timezone.utc)
        .replace(microsecond=timestamp_us % 1_000_000)
        .isoformat()
    )


SESSION_FIELDS = (
    "session",
    "calls",
    "unpriced_calls",
    "cost_usd",
    "non_token_cost_usd",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "call_time_ms",
    "span_ms",
    "first_call",
    "last_call",
    "agents",
)  # the fields of `session_row_view`, in its order


def session_row_view(row: SessionRow) -> dict[str, Any]:
    """One session as JSON (money as exact decimal strings — `non_token_cost_usd` is the part of the cost
    not paid for tokens — times in ISO 8601 UTC)."""
    return {
        "session": row.session,
        "calls": row.calls,
        "unpriced_calls": row.unpriced_calls,
        "cost_usd": str(units_to_decimal(row.cost_units)),
        "non_token_cost_usd": str(units_to_decimal(row.non_token_units)),
        "input_tokens": row.input_tokens,
        "output_tokens": row.output_tokens,
        "total_tokens": row.total_tokens,
        "call_time_ms": row.duration_ms,
        "span_ms": row.span_ms,
        "first_call": _iso(row.first_us),
        "last_call": _iso(row.last_us),
        "agents": list(row.agents),
    }


def rows_of_records(records: Iterable[Record]) -> dict[str, SessionRow]:
    """Session rows summed straight from records (what a per-session rollup must equal)."""
    found: dict[str, SessionRow] = {}
    agents: dict[str, set[str]] = {}
    for record in records:
        name = record.session
        if name is None:
            continue
        row = found.get(name)
        if row is None:
            row = found[name] = SessionRow(name, first_us=record.timestamp_us, last_us=record.timestamp_us)
            agents[name] = set()
        row.calls += 1
        if record.cost_units is None:
            row.unpriced_calls += 1
        else:
            row.cost_units += record.cost_units
            row.non_token_units += record.non_token_units
        row.input_tokens += record.usage.input_tokens
        row.output_tokens += record.usage.output_tokens
        row.duration_ms += record.duration_ms or 0.0
        row.first_us = min(row.first_us, record.timestamp_us)
        row.last_us = max(row.last_us, record.timestamp_us)
        if record.agent is not None:
            agents[name].add(record.agent)
    for name, row in found.items():
        row.agents = tuple(sorted(agents[name]))
    return found
