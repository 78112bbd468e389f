"""The small two-agent scenario the tracker and store contract tests both query."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import tokentrail as tt
from tokentrail._record import SummaryRow
from tokentrail.scope import scope
from tokentrail.tracker import Tracker

T0 = datetime(2025, 6, 1, 10, 0, tzinfo=timezone.utc)
SMALL = tt.Usage(input_tokens=100, output_tokens=10)
BIG = tt.Usage(input_tokens=2_000, output_tokens=500, cache_read_tokens=1_000)


def groups(rows: list[SummaryRow], *keys: str) -> dict[tuple[object, ...], int]:
    """{group values: calls} of summary rows, for compact assertions."""
    return {tuple(row.group[k] for k in keys): row.calls for row in rows}


def record_scenario(tracker: Tracker) -> Tracker:
    """Researcher (two calls in one hour, tagged) and writer (an hour later, and a day later, unpriced)."""
    with scope(agent="researcher", session="s1", user="alice", tags=["eval", "web"]):
        tracker.record(SMALL, "gpt-4o", at=T0, tool="search", duration_ms=100.0)
        tracker.record(BIG, "claude-sonnet-4-5", at=T0 + timedelta(minutes=30), duration_ms=400.0)
    with scope(agent="writer", session="s2", user="bob"):
        tracker.record(BIG, "gpt-4o", at=T0 + timedelta(hours=1, minutes=5))
        tracker.record(SMALL, "acme-private", at=T0 + timedelta(days=1))
    return tracker
