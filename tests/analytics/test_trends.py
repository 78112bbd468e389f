from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

import tokentrail as tt
from tokentrail.analytics import trends
from tokentrail.tracker import Tracker

T0 = datetime(2025, 6, 2, 9, tzinfo=timezone.utc)  # a Monday
SMALL = tt.Usage(input_tokens=1000, output_tokens=100)
BIG = tt.Usage(input_tokens=5000, output_tokens=700)


def test_daily_sums_by_model_are_exact_with_change(make_tracker: Callable[[], Tracker]) -> None:
    tracker = make_tracker()
    tracker.record(SMALL, "gpt-4o", at=T0)
    tracker.record(SMALL, "gpt-4o", at=T0 + timedelta(hours=3))
    tracker.record(BIG, "gpt-4o", at=T0 + timedelta(days=1))
    tracker.record(SMALL, "gpt-4o-mini", at=T0 + timedelta(days=1))
    small, big = tt.price(SMALL, "gpt-4o").total, tt.price(BIG, "gpt-4o").total
    rows = trends(tracker, "day", by=("model",))
    assert [(r.period, r.group["model"], r.calls) for r in rows] == [
        (date(2025, 6, 2), "gpt-4o", 2),
        (date(2025, 6, 3), "gpt-4o", 1),
        (date(2025, 6, 3), "gpt-4o-mini", 1),
    ]
    first, second, mini = rows
    assert first.cost == small * 2 and first.previous_cost is None and first.cost_change_pct is None
    assert second.cost == big and second.previous_cost == small * 2
    assert second.cost_change == big - small * 2
    assert second.cost_change_pct == pytest.approx(float((big - 2 * small) * 100 / (2 * small)))
    assert second.total_tokens == 5700 and second.previous_tokens == 2200
    assert mini.previous_cost == Decimal(0) and mini.cost_change_pct is None  # nothing the day before


def test_weeks_start_on_monday_and_months_on_the_first(make_tracker: Callable[[], Tracker]) -> None:
    tracker = make_tracker()
    for day in range(14):  # two full weeks, one call a day
        tracker.record(SMALL, "gpt-4o", at=T0 + timedelta(days=day))
    tracker.record(SMALL, "gpt-4o", at=datetime(2025, 7, 1, tzinfo=timezone.utc))
    one = tt.price(SMALL, "gpt-4o").total
    weeks = trends(tracker, "week")
    assert [(r.period, r.calls) for r in weeks] == [
        (date(2025, 6, 2), 7),
        (date(2025, 6, 9), 7),
        (date(2025, 6, 30), 1),
    ]
    assert weeks[1].cost == one * 7 and weeks[1].cost_change == 0 and weeks[1].cost_change_pct == 0.0
    assert weeks[2].previous_cost == 0  # the week of 23 June had no calls
    months = trends(tracker, "month")
    assert [(r.period, r.calls, r.cost) for r in months] == [
        (date(2025, 6, 1), 14, one * 14),
        (date(2025, 7, 1), 1, one),
    ]
    assert months[1].cost_change_pct == pytest.approx(float((one - 14 * one) * 100 / (14 * one)))


def test_filters_and_range(make_tracker: Callable[[], Tracker]) -> None:
    tracker = make_tracker()
    tracker.record(SMALL, "gpt-4o", agent="a", at=T0)
    tracker.record(SMALL, "gpt-4o", agent="b", at=T0)
    tracker.record(SMALL, "gpt-4o", agent="a", at=T0 + timedelta(days=2))
    rows = trends(tracker, "day", since=T0 + timedelta(days=1), agent="a")
    assert [(r.period, r.calls) for r in rows] == [(date(2025, 6, 4), 1)]
    assert trends(tracker.store, "day", agent="b")[0].calls == 1  # a bare store answers too


def test_bad_period_and_key() -> None:
    tracker = Tracker()
    with pytest.raises(ValueError, match="period"):
        trends(tracker, "year")
    with pytest.raises(ValueError, match="cannot group"):
        trends(tracker, "day", by=("hour",))
