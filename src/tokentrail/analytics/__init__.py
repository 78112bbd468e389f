"""Analytics over a ledger (a `Tracker` or any `Store`): trends, a month-end forecast, anomalies,
efficiency and optimization advice. Every function reads through the public query API (`summary`
by time bucket; `history` only where maxima are needed) and returns frozen dataclasses with
`as_dict()` for JSON. Money is exact `Decimal` USD. See docs/analytics.md.

Stable API (the dashboard uses it):

    trends(source, period="day"|"week"|"month", by=(), since=None, until=None, **filters) -> list[TrendRow]
    forecast_month(source, *, today=None, history_days=28, confidence=0.95, **filters) -> Forecast
    detect_anomalies(source, *, by=(), since=None, until=None, baseline_hours=168, min_history=24,
                     threshold=3.5, metrics=METRICS, publish_to=None, **filters) -> list[Anomaly]
    efficiency(source, by=("agent",), since=None, until=None, **filters) -> list[EfficiencyRow]
    advise(source, since=None, until=None, *, catalog=None, context_threshold=0.9, **filters) -> Advice
    cheaper_models / caching_opportunities / context_pressure — the three parts of `advise`
    CallCostMonitor(bus=None, *, window=200, min_history=30, threshold=3.5).attach()  # live, per call
"""

from tokentrail.analytics.advice import (
    Advice,
    CachingOpportunity,
    ContextPressure,
    ModelSwitch,
    advise,
    caching_opportunities,
    cheaper_models,
    context_pressure,
)
from tokentrail.analytics.anomalies import METRICS, Anomaly, detect_anomalies
from tokentrail.analytics.efficiency import EfficiencyRow, efficiency
from tokentrail.analytics.forecast import Forecast, forecast_month
from tokentrail.analytics.live import CallCostMonitor
from tokentrail.analytics.trends import PERIODS, TrendRow, trends

__all__ = [
    "METRICS",
    "PERIODS",
    "Advice",
    "Anomaly",
    "CachingOpportunity",
    "CallCostMonitor",
    "ContextPressure",
    "EfficiencyRow",
    "Forecast",
    "ModelSwitch",
    "TrendRow",
    "advise",
    "caching_opportunities",
    "cheaper_models",
    "context_pressure",
    "detect_anomalies",
    "efficiency",
    "forecast_month",
    "trends",
]
