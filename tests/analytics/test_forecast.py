"""Month-end forecast on synthetic daily series with known answers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest

import tokentrail as tt
from tokentrail.analytics import forecast_month
from tokentrail.analytics._stats import t_quantile
from tokentrail.stores.memory import MemoryStore
from tokentrail.tracker import Tracker

TODAY = date(2025, 6, 21)  # June has 30 days: 10 left, today included


def flat_tracker(store: object = None) -> Tracker:
    """A tracker pricing model "flat" at $1 per million input tokens: input millions = dollars."""
    catalog = tt.Catalog.from_snapshot()
    catalog.set_price("flat", input="1", output="0")
    return Tracker(store=store or MemoryStore(), catalog=catalog)  # type: ignore[arg-type]


def spend(tracker: Tracker, day: date, dollars: Fraction | int) -> None:
    """Record `dollars` of spend on `day` (at noon UTC)."""
    at = datetime(day.year, day.month, day.day, 12, tzinfo=timezone.utc)
    tracker.record(tt.Usage(input_tokens=int(dollars * 1_000_000)), "flat", at=at)


def test_constant_series_has_a_zero_width_interval(make_tracker: Callable[[], Tracker]) -> None:
    tracker = flat_tracker(make_tracker().store)
    for back in range(1, 25):  # 28 May – 20 June; only the last 14 days are fitted
        spend(tracker, TODAY - timedelta(days=back), 3)
    result = forecast_month(tracker, today=TODAY, history_days=14)
    assert result.days_observed == 14 and result.days_left == 10
    assert result.spent == 3 * 20  # 1–20 June
    assert result.predicted_rest == 3 * 10
    assert result.total == 90 and result.low == result.high == 90
    assert result.slope_per_day == 0


def test_exact_line_is_extrapolated_with_zero_width() -> None:
    tracker = flat_tracker()
    for back in range(1, 11):  # cost = 100 − 2·back dollars: +2 $/day
        spend(tracker, TODAY - timedelta(days=back), 100 - 2 * back)
    result = forecast_month(tracker, today=TODAY, history_days=10)
    assert result.slope_per_day == 2
    assert result.spent == sum(100 - 2 * b for b in range(1, 11))  # 11–20 June are in this month
    assert result.predicted_rest == sum(100 + 2 * k for k in range(10))  # today (k=0) … 30 June
    assert result.low == result.high == result.total


def test_noisy_series_interval_matches_the_textbook_formula() -> None:
    tracker = flat_tracker()
    costs = [5, 7, 6, 9, 4, 8, 7, 10, 6, 9, 8, 11, 7, 10]
    days = [TODAY - timedelta(days=14 - i) for i in range(14)]
    for day, dollars in zip(days, costs, strict=True):
        spend(tracker, day, dollars)
    result = forecast_month(tracker, today=TODAY, history_days=14)
    x = np.array([(d - TODAY).days for d in days], dtype=float)
    y = np.array(costs, dtype=float)
    slope, intercept = np.polyfit(x, y, 1)
    future = np.arange(10, dtype=float)
    predicted = float(np.sum(intercept + slope * future))
    sigma2 = float(np.sum((y - (intercept + slope * x)) ** 2)) / (len(x) - 2)
    sxx = float(np.sum((x - x.mean()) ** 2))
    m = len(future)
    sd = (sigma2 * (m + m * m / len(x) + float(np.sum(future - x.mean())) ** 2 / sxx)) ** 0.5
    half = t_quantile(0.975, len(x) - 2) * sd
    spent = sum(c for d, c in zip(days, costs, strict=True) if d.month == 6)
    assert float(result.predicted_rest) == pytest.approx(predicted, rel=1e-12)
    assert float(result.total) == pytest.approx(spent + predicted, rel=1e-12)
    assert float(result.high - result.total) == pytest.approx(half, rel=1e-9)
    assert float(result.total - result.low) == pytest.approx(half, rel=1e-9)
    assert result.low < result.total < result.high


def test_days_without_calls_count_as_zero_cost() -> None:
    tracker = flat_tracker()
    for back in (1, 3, 5, 7):
        spend(tracker, TODAY - timedelta(days=back), 2)
    result = forecast_month(tracker, today=TODAY, history_days=7)
    assert [c for _, c in result.daily] == [2, 0, 2, 0, 2, 0, 2]
    assert result.days_observed == 7


def test_history_starts_at_the_first_record() -> None:
    tracker = flat_tracker()
    for back in (1, 2, 3):
        spend(tracker, TODAY - timedelta(days=back), 1)
    result = forecast_month(tracker, today=TODAY, history_days=28)
    assert result.days_observed == 3 and result.total == 20 + 10 - 17  # 3 days spent + 10 predicted


def test_too_little_history_is_refused() -> None:
    tracker = flat_tracker()
    spend(tracker, TODAY - timedelta(days=1), 1)
    with pytest.raises(ValueError, match="at least 3"):
        forecast_month(tracker, today=TODAY)
    with pytest.raises(ValueError, match="no records"):
        forecast_month(flat_tracker(), today=TODAY)


def test_low_end_never_below_what_was_spent() -> None:
    tracker = flat_tracker()
    for back, dollars in zip(range(1, 8), [0, 50, 0, 40, 0, 60, 0], strict=True):
        spend(tracker, TODAY - timedelta(days=back), dollars)
    result = forecast_month(tracker, today=TODAY, history_days=7)
    assert result.low >= result.spent
    assert result.as_dict()["method"] == "ols-daily-cost"
    assert Decimal(result.as_dict()["total_usd"]) == result.total


@pytest.mark.parametrize(("df", "exact"), [(3, 3.182446), (5, 2.570582), (12, 2.178813), (30, 2.042272)])
def test_t_quantile_against_table_values(df: int, exact: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(exact, abs=0.01)


def test_large_amounts_keep_every_digit() -> None:
    tracker = flat_tracker()
    for back, dollars in zip(range(1, 6), [50_000, 70_001, 60_000, 90_000, 40_000], strict=True):
        spend(tracker, TODAY - timedelta(days=back), dollars)
    result = forecast_month(tracker, today=TODAY)
    assert result.spent == 310_001 and result.total > result.spent
    assert result.low == result.spent  # five scattered days: the interval reaches below the floor
    assert result.high > result.total
    assert -result.high.as_tuple().exponent == 24  # to the yocto-dollar, not cut to 28 digits
