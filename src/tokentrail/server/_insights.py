"""Anomalies and the month-end forecast from `tokentrail.analytics`, when that package is importable.

When the import fails the dashboard shows "analytics not available" in their panel instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from tokentrail._record import before

if TYPE_CHECKING:
    from tokentrail.server._params import Selection
    from tokentrail.tracker import Tracker

__all__ = ["Insights", "analytics_available", "insights"]

_MAX_SPAN = timedelta(days=7)  # anomaly scans cover at most the last 7 days of a selection (cost)


@dataclass(frozen=True, slots=True)
class Insights:
    """What the analytics panel shows; `available` is False when the analytics package cannot load."""

    available: bool
    anomalies: list[dict[str, Any]]
    forecast: dict[str, Any] | None
    forecast_note: str | None


def analytics_available() -> bool:
    try:
        import tokentrail.analytics  # noqa: F401
    except ImportError:
        return False
    return True


def anomalies(tracker: Tracker, selection: Selection) -> list[dict[str, Any]]:
    """Hours in the selection (its last 7 days at most) whose cost is far above their baseline."""
    from tokentrail.analytics import detect_anomalies

    until = selection.until or selection.now
    since = selection.since if selection.since is not None else before(until, timedelta(hours=24))
    since = max(since, before(until, _MAX_SPAN))
    if since >= until:
        return []
    found = detect_anomalies(tracker, since=since, until=until, **selection.filters)
    return [item.as_dict() for item in found]


def forecast(tracker: Tracker, selection: Selection) -> tuple[dict[str, Any] | None, str | None]:
    """This month's forecast (the month of the request's `now`) for the selection's scope, or (None, why not)."""
    from tokentrail.analytics import forecast_month

    try:
        return forecast_month(tracker, today=selection.now.date(), **selection.filters).as_dict(), None
    except ValueError as exc:
        return None, str(exc)


def insights(tracker: Tracker, selection: Selection) -> Insights:
    if not analytics_available():
        return Insights(False, [], None, "analytics not available")
    found = anomalies(tracker, selection)
    outlook, note = forecast(tracker, selection)
    return Insights(True, found, outlook, note)
