"""Aggregation with historical trends, cost by model / provider / time, and a month-end forecast.

The history is recorded with explicit dates (as an import of past usage would be).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import tokentrail as tt
from tokentrail.analytics import forecast_month, trends


def main() -> None:
    tracker = tt.Tracker()
    start = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
    for day in range(14):
        at = start + timedelta(days=day)
        calls = 2 + day // 7  # usage grows in the second week
        for _ in range(calls):
            tracker.record(tt.Usage(input_tokens=10_000, output_tokens=1_000), "gpt-4o", at=at)
        tracker.record(tt.Usage(input_tokens=4_000, output_tokens=1_000), "claude-sonnet-4-5", at=at)

    for row in trends(tracker, period="week"):
        change = "n/a" if row.previous_cost is None else f"{row.cost - row.previous_cost:+}"
        print(f"week of {row.period}: calls={row.calls} cost=${row.cost} change={change}")
    for key in ("model", "provider"):
        for row in sorted(tracker.summary(by=(key,)), key=lambda r: str(r.group[key])):
            print(f"cost by {key} {row.group[key]}: ${row.cost}")
    by_day = sorted(tracker.summary(by=("day",)), key=lambda r: str(r.group["day"]))
    print(
        f"cost by day: first {by_day[0].group['day']} ${by_day[0].cost}, last {by_day[-1].group['day']} ${by_day[-1].cost}"
    )

    forecast = forecast_month(tracker, today=date(2026, 3, 15))
    print(
        f"forecast March: spent ${forecast.spent} total ${forecast.total:.4f} "
        f"[{forecast.low:.4f}, {forecast.high:.4f}] at {forecast.confidence:.0%}"
    )


if __name__ == "__main__":
    main()
