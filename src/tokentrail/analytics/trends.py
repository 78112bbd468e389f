"""Trends: cost, tokens and calls per day, ISO week or month, optionally by model/provider/agent/…,
each period compared with the one before it (read from `summary` by day or month, never raw rows)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tokentrail._money import units_to_decimal
from tokentrail._record import GroupValue
from tokentrail.analytics._source import summary
from tokentrail.stores.base import GROUP_KEYS, TIME_KEYS

if TYPE_CHECKING:
    from tokentrail.stores.base import Store
    from tokentrail.tracker import Tracker

__all__ = ["PERIODS", "TrendRow", "period_start", "trends"]

PERIODS = ("day", "week", "month")


@dataclass(frozen=True, slots=True)
class TrendRow:
    """One group in one period, with the change from the previous period of the same group.

    `previous_*` is None when the previous period lies before the data asked for (nothing to compare);
    a previous period inside it without calls counts as 0. Percentages are None when the previous value is 0.
    """

    period: date  # first day of the period (Monday for weeks)
    group: dict[str, GroupValue]
    calls: int
    unpriced_calls: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cost: Decimal
    previous_cost: Decimal | None
    previous_tokens: int | None
    previous_calls: int | None

    @property
    def cost_change(self) -> Decimal | None:
        return None if self.previous_cost is None else self.cost - self.previous_cost

    @property
    def cost_change_pct(self) -> float | None:
        return _pct(self.cost, self.previous_cost)

    @property
    def tokens_change_pct(self) -> float | None:
        return _pct(self.total_tokens, self.previous_tokens)

    @property
    def calls_change_pct(self) -> float | None:
        return _pct(self.calls, self.previous_calls)

    def as_dict(self) -> dict[str, Any]:
        return {
            "period": self.period.isoformat(),
            "group": {k: None if v is None else str(v) for k, v in self.group.items()},
            "calls": self.calls,
            "unpriced_calls": self.unpriced_calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "cost_usd": str(self.cost),
            "previous_cost_usd": None if self.previous_cost is None else str(self.previous_cost),
            "cost_change_usd": None if self.cost_change is None else str(self.cost_change),
            "cost_change_pct": self.cost_change_pct,
            "tokens_change_pct": self.tokens_change_pct,
            "calls_change_pct": self.calls_change_pct,
        }


def _pct(now: Decimal | int, before: Decimal | int | None) -> float | None:
    if before is None or before == 0:
        return None
    return float((Decimal(now) - Decimal(before)) * 100 / Decimal(before))


def period_start(day: date, period: str) -> date:
    """The first day of the day/week (Monday)/month containing `day`."""
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return date(day.year, day.month, 1)
    raise ValueError(f"period must be one of {', '.join(PERIODS)}, got {period!r}")


def _previous(start: date, period: str) -> date:
    if period == "day":
        return start - timedelta(days=1)
    if period == "week":
        return start - timedelta(days=7)
    return period_start(start - timedelta(days=1), "month")


def trends(
    source: Tracker | Store,
    period: str = "day",
    by: tuple[str, ...] = (),
    since: datetime | date | None = None,
    until: datetime | date | None = None,
    **filters: Any,
) -> list[TrendRow]:
    """Cost, tokens and calls per `period` ("day", "week", "month") and group `by`, oldest first,
    each with the previous period of the same group (exact sums from the store's day/month buckets)."""
    period_start(date(2000, 1, 1), period)  # validates
    bad = [key for key in by if key not in GROUP_KEYS or key in TIME_KEYS]
    if bad:
        raise ValueError(f"cannot group trends by {', '.join(bad)}")
    bucket = "month" if period == "month" else "day"
    rows = summary(source, (bucket, *by), since, until, filters)
    sums: dict[tuple[date, tuple[GroupValue, ...]], list[int]] = {}
    for row in rows:
        day = row.group[bucket]
        assert isinstance(day, date)
        key = (period_start(day, period), tuple(row.group[k] for k in by))
        acc = sums.setdefault(key, [0, 0, 0, 0, 0, 0])
        for i, value in enumerate(
            (
                row.calls,
                row.unpriced_calls,
                row.input_tokens,
                row.output_tokens,
                row.total_tokens,
                row.cost_units,
            )
        ):
            acc[i] += value
    if not sums:
        return []
    first = min(start for start, _ in sums)
    result = []
    for (start, values), acc in sorted(sums.items(), key=lambda item: (item[0][0], _sortable(item[0][1]))):
        before_start = _previous(start, period)
        before = sums.get((before_start, values)) if before_start >= first else None
        inside = before_start >= first
        result.append(
            TrendRow(
                period=start,
                group=dict(zip(by, values, strict=True)),
                calls=acc[0],
                unpriced_calls=acc[1],
                input_tokens=acc[2],
                output_tokens=acc[3],
                total_tokens=acc[4],
                cost=units_to_decimal(acc[5]),
                previous_cost=units_to_decimal(before[5]) if before else (Decimal(0) if inside else None),
                previous_tokens=before[4] if before else (0 if inside else None),
                previous_calls=before[0] if before else (0 if inside else None),
            )
        )
    return result


def _sortable(values: tuple[GroupValue, ...]) -> tuple[str, ...]:
    return tuple("" if v is None else str(v) for v in values)
