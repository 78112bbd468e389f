"""Efficiency per group: cost per call, per session and per complete call, cache hit rate, output speed.

All figures come from `summary` rows: the session count is the number of distinct non-empty sessions
(a summary by the group and session), cache hit rate is cache-read input tokens / input tokens, and
output speed is output tokens / seconds over the calls that reported a duration.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tokentrail._record import GroupValue
from tokentrail.analytics._source import summary

if TYPE_CHECKING:
    from tokentrail.stores.base import Store
    from tokentrail.tracker import Tracker

__all__ = ["EfficiencyRow", "efficiency"]


@dataclass(frozen=True, slots=True)
class EfficiencyRow:
    group: dict[str, GroupValue]
    calls: int
    complete_calls: int  # calls whose provider reported usage in full (status "complete")
    sessions: int
    cost: Decimal
    cost_per_call: Decimal | None  # per priced call
    cost_per_session: Decimal | None  # cost of the calls made in a session / sessions
    cost_per_complete_call: Decimal | None
    cache_hit_rate: float | None  # cache-read input tokens / input tokens
    output_tokens_per_second: float | None

    def as_dict(self) -> dict[str, Any]:
        def text(value: Decimal | None) -> str | None:
            return None if value is None else str(value)

        return {
            "group": {k: None if v is None else str(v) for k, v in self.group.items()},
            "calls": self.calls,
            "complete_calls": self.complete_calls,
            "sessions": self.sessions,
            "cost_usd": str(self.cost),
            "cost_per_call_usd": text(self.cost_per_call),
            "cost_per_session_usd": text(self.cost_per_session),
            "cost_per_complete_call_usd": text(self.cost_per_complete_call),
            "cache_hit_rate": self.cache_hit_rate,
            "output_tokens_per_second": self.output_tokens_per_second,
        }


def efficiency(
    source: Tracker | Store,
    by: tuple[str, ...] = ("agent",),
    since: datetime | date | None = None,
    until: datetime | date | None = None,
    **filters: Any,
) -> list[EfficiencyRow]:
    """Efficiency figures per group `by` over [since, until), most expensive first."""
    if "session" in by:
        raise ValueError("efficiency counts sessions itself; group by something else")
    sessions: dict[tuple[GroupValue, ...], tuple[int, int]] = {}
    for row in summary(source, (*by, "session"), since, until, filters):
        if row.group["session"] is None:
            continue
        key = tuple(row.group[k] for k in by)
        count, units = sessions.get(key, (0, 0))
        sessions[key] = (count + 1, units + row.cost_units)
    result = []
    for row in summary(source, by, since, until, filters):
        key = tuple(row.group[k] for k in by)
        session_count, session_units = sessions.get(key, (0, 0))
        complete = row.status_counts.get("complete", 0)
        seconds = row.duration_ms / 1000
        result.append(
            EfficiencyRow(
                group=dict(row.group),
                calls=row.calls,
                complete_calls=complete,
                sessions=session_count,
                cost=row.cost,
                cost_per_call=row.cost_per_call,
                cost_per_session=_ratio(session_units, session_count),
                cost_per_complete_call=row.cost / complete if complete else None,
                cache_hit_rate=row.cache_read_tokens / row.input_tokens if row.input_tokens else None,
                output_tokens_per_second=row.timed_output_tokens / seconds if seconds > 0 else None,
            )
        )
    result.sort(key=lambda r: r.cost, reverse=True)
    return result


def _ratio(units: int, count: int) -> Decimal | None:
    from tokentrail._money import units_to_decimal

    return units_to_decimal(units) / count if count else None
