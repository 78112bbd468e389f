"""Anomalies: an hour whose cost, or whose mean cost per call, is far above its recent baseline.

For every group (`by`, e.g. agent) and every active hour (an hour with calls) in [since, until),
the baseline is the group's active hours in the `baseline_hours` before it. With at least
`min_history` of them, the hour's modified z-score 0.6745·(x − median)/MAD (Iglewicz & Hoaglin,
1993; mean absolute deviation when MAD is 0) above `threshold` (3.5, their recommended cut-off)
flags it. Median and MAD ignore a few past spikes, and a slow trend moves the median with it, so
neither a noisy baseline nor steady growth raises alarms. Hours come from `summary` by hour.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from tokentrail._record import GroupValue, before, to_timestamp_us
from tokentrail.analytics._source import fraction_usd, summary, units_fraction
from tokentrail.analytics._stats import SCALE, SortedWindow

if TYPE_CHECKING:
    from tokentrail.events import EventBus
    from tokentrail.stores.base import Store
    from tokentrail.tracker import Tracker

__all__ = ["METRICS", "Anomaly", "detect_anomalies"]

METRICS = ("cost_per_hour", "cost_per_call")


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One hour of one group whose `metric` scored above the threshold."""

    metric: str
    period: datetime  # start of the UTC hour
    group: dict[str, GroupValue]
    value: Decimal
    baseline_median: Decimal
    score: float
    baseline_size: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "period": self.period.isoformat(),
            "group": {k: None if v is None else str(v) for k, v in self.group.items()},
            "value_usd": str(self.value),
            "baseline_median_usd": str(self.baseline_median),
            "score": self.score,
            "baseline_size": self.baseline_size,
        }


def detect_anomalies(
    source: Tracker | Store,
    *,
    by: tuple[str, ...] = (),
    since: datetime | date | None = None,
    until: datetime | date | None = None,
    baseline_hours: int = 168,
    min_history: int = 24,
    threshold: float = 3.5,
    metrics: tuple[str, ...] = METRICS,
    publish_to: EventBus | None = None,
    **filters: Any,
) -> list[Anomaly]:
    """Hours in [since, until) (the last 24 h by default) far above their baseline; see the module doc.

    With `publish_to`, every anomaly found is also published there as an `anomaly` event.
    """
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown metric {', '.join(unknown)}; known: {', '.join(METRICS)}")
    if min_history < 3:
        raise ValueError("min_history must be at least 3")
    end = until or datetime.now(timezone.utc)
    start = since or before(_as_datetime(end), timedelta(hours=24))
    since_us = to_timestamp_us(start)
    read_from = before(_as_datetime(start), timedelta(hours=baseline_hours))
    series: dict[tuple[GroupValue, ...], list[tuple[datetime, int, int]]] = {}
    for row in summary(source, ("hour", *by), read_from, end, filters):
        hour = row.group["hour"]
        assert isinstance(hour, datetime)
        if row.priced_calls:
            series.setdefault(tuple(row.group[k] for k in by), []).append(
                (hour, row.cost_units, row.priced_calls)
            )
    found: list[Anomaly] = []
    window = timedelta(hours=baseline_hours)
    for values, points in series.items():
        points.sort()
        group = dict(zip(by, values, strict=True))
        for metric in metrics:
            found.extend(_scan(metric, points, group, since_us, window, min_history, threshold))
    found.sort(key=lambda a: (a.period, a.metric))
    if publish_to is not None:
        _publish(found, publish_to)
    return found


def _scan(
    metric: str,
    points: list[tuple[datetime, int, int]],
    group: dict[str, GroupValue],
    since_us: int,
    window: timedelta,
    min_history: int,
    threshold: float,
) -> list[Anomaly]:
    """Score each hour of one series (sorted by hour) against the hours of the `window` before it,
    sliding one sorted baseline along instead of sorting each hour's baseline afresh."""
    # in yocto-dollars: an hour's cost as an int (scaled, so medians stay ints), a call's as a fraction
    values: list[int | Fraction]
    if metric == "cost_per_hour":
        values = [cost * SCALE for _, cost, _ in points]
        unit = Fraction(1, SCALE)
    else:
        values = [Fraction(cost, calls) for _, cost, calls in points]
        unit = Fraction(1)
    baseline = SortedWindow()
    oldest = 0  # the first point still inside the baseline window
    found: list[Anomaly] = []
    for index, (hour, _, _) in enumerate(points):
        while oldest < index and points[oldest][0] < hour - window:
            baseline.remove(values[oldest])
            oldest += 1
        if to_timestamp_us(hour) >= since_us and len(baseline) >= min_history:
            score, center = baseline.robust_z(values[index])
            if score > threshold:
                found.append(
                    Anomaly(
                        metric,
                        hour,
                        dict(group),
                        fraction_usd(units_fraction(values[index] * unit)),
                        fraction_usd(units_fraction(center * unit)),
                        score,
                        len(baseline),
                    )
                )
        baseline.add(values[index])
    return found


def _publish(found: list[Anomaly], bus: EventBus) -> None:
    from tokentrail.events import AnomalyEvent

    for anomaly in found:
        bus.publish(
            AnomalyEvent(
                metric=anomaly.metric,
                group={k: None if v is None else str(v) for k, v in anomaly.group.items()},
                value=anomaly.value,
                baseline_median=anomaly.baseline_median,
                score=anomaly.score,
                period=anomaly.period,
            )
        )


def _as_datetime(when: datetime | date) -> datetime:
    if isinstance(when, datetime):
        return when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    return datetime(when.year, when.month, when.day, tzinfo=timezone.utc)
