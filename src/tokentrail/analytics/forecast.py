"""Month-end cost forecast: a straight line fitted to daily cost, with a prediction interval.

Method (ordinary least squares on daily cost):

1. Daily cost over the last `history_days` complete UTC days before `today` (from the first day
   with any record if that is later; days without calls cost $0), read from `summary` by day.
2. Fit cost = a + b·day by least squares, exactly (fractions).
3. Forecast = cost of this month's complete days + the line's predictions for today and every day
   left in the month (today's partial spend is replaced by its prediction).
4. Interval: forecast ± t(n−2) × σ̂·√(m + m²/n + (Σ(xᵢ − x̄))²/Sxx) — the standard error of a sum of
   m new observations under the fitted line with independent normal residuals (σ̂ from the residuals,
   n days observed). The low end is never below what was already spent. A series with no scatter
   (constant or exactly linear) has an interval of width 0.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from tokentrail.analytics._source import fraction_usd, summary, units_fraction
from tokentrail.analytics._stats import LinearFit, t_quantile

if TYPE_CHECKING:
    from tokentrail.stores.base import Store
    from tokentrail.tracker import Tracker

__all__ = ["METHOD", "Forecast", "forecast_month"]

METHOD = "ols-daily-cost"
MIN_DAYS = 3


@dataclass(frozen=True, slots=True)
class Forecast:
    """Where this month's cost is heading: `total` with its interval [`low`, `high`] at `confidence`."""

    month: date  # first day of the month forecast
    today: date
    spent: Decimal  # cost of the month's complete days before `today`
    predicted_rest: Decimal  # predicted cost of today and the days left
    total: Decimal
    low: Decimal
    high: Decimal
    confidence: float
    days_observed: int
    days_left: int  # today included
    slope_per_day: Decimal  # change in daily cost per day
    daily: tuple[tuple[date, Decimal], ...]  # the series fitted
    method: str = METHOD

    def as_dict(self) -> dict[str, Any]:
        return {
            "month": self.month.isoformat(),
            "today": self.today.isoformat(),
            "spent_usd": str(self.spent),
            "predicted_rest_usd": str(self.predicted_rest),
            "total_usd": str(self.total),
            "low_usd": str(self.low),
            "high_usd": str(self.high),
            "confidence": self.confidence,
            "days_observed": self.days_observed,
            "days_left": self.days_left,
            "slope_per_day_usd": str(self.slope_per_day),
            "method": self.method,
            "daily": [{"day": d.isoformat(), "cost_usd": str(c)} for d, c in self.daily],
        }


def forecast_month(
    source: Tracker | Store,
    *,
    today: date | None = None,
    history_days: int = 28,
    confidence: float = 0.95,
    **filters: Any,
) -> Forecast:
    """Forecast the cost of the month containing `today` (UTC today by default); see the module doc.

    Raises ValueError with fewer than 3 complete days of history.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if history_days < MIN_DAYS:
        raise ValueError(f"history_days must be at least {MIN_DAYS}")
    today = today or datetime.now(timezone.utc).date()
    month = date(today.year, today.month, 1)
    start = min(today - timedelta(days=history_days), month)
    per_day: dict[date, int] = {}
    for row in summary(source, ("day",), start, today, filters):
        day = row.group["day"]
        assert isinstance(day, date)
        per_day[day] = per_day.get(day, 0) + row.cost_units
    if not per_day:
        raise ValueError("no records before today to forecast from")
    first = max(min(per_day), today - timedelta(days=history_days))
    days = [first + timedelta(days=i) for i in range((today - first).days)]
    if len(days) < MIN_DAYS:
        raise ValueError(f"a forecast needs at least {MIN_DAYS} complete days of history, found {len(days)}")
    xs = [Fraction((d - today).days) for d in days]
    ys = [units_fraction(per_day.get(d, 0)) for d in days]
    fit = LinearFit(xs, ys)
    last_day = calendar.monthrange(today.year, today.month)[1]
    future = [Fraction(i) for i in range(last_day - today.day + 1)]
    predicted = sum((fit.predict(x) for x in future), Fraction(0))
    spent = sum((units_fraction(units) for d, units in per_day.items() if d >= month), Fraction(0))
    total = spent + max(predicted, Fraction(0))
    t = Fraction(repr(t_quantile((1 + confidence) / 2, fit.n - 2)))
    half_width = t * fit.sum_prediction_sd(future)
    spent_usd = fraction_usd(spent)
    return Forecast(
        month=month,
        today=today,
        spent=spent_usd,
        predicted_rest=fraction_usd(max(predicted, Fraction(0))),
        total=fraction_usd(total),
        low=max(spent_usd, fraction_usd(total - half_width)),
        high=fraction_usd(total + half_width),
        confidence=confidence,
        days_observed=len(days),
        days_left=len(future),
        slope_per_day=fraction_usd(fit.slope),
        daily=tuple((d, fraction_usd(y)) for d, y in zip(days, ys, strict=True)),
    )
