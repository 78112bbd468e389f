"""`get_token_tracker()`: one process-wide tracker with statistics, a budget and JSON export.

Backed by `tokentrail.get_tracker()` (so `tt.instrument()` calls count here too); the budget is a
`tokentrail.Budget` on that tracker's `BudgetManager`, with alerts at 90 % and at the limit.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from tokentrail.budgets.events import BudgetAlert
from tokentrail.compat.agent_tracker import UsageTotals
from tokentrail.tracker import Tracker

__all__ = ["GlobalTokenTracker", "get_token_tracker", "reset_token_tracker"]

logger = logging.getLogger("tokentrail.compat")


class GlobalTokenTracker:
    """Statistics over a `Tracker`, plus an optional USD budget that warns at 90 % and alerts at 100 %.

    `budget_action="block"` (default) refuses calls that no longer fit (`BudgetExceeded`, HTTP 402 in
    FastAPI); "warn" only alerts.
    """

    def __init__(
        self,
        tracker: Tracker | None = None,
        *,
        budget_usd: Decimal | str | int | None = None,
        budget_window: str = "monthly",
        budget_action: str = "block",
        on_alert: Callable[[BudgetAlert], object] | None = None,
    ) -> None:
        from tokentrail.budgets import Budget

        self.budget_usd = None if budget_usd is None else Decimal(str(budget_usd))
        self.alerts: list[BudgetAlert] = []
        self._on_alert = on_alert
        if tracker is None:
            budgets = (
                []
                if self.budget_usd is None
                else [
                    Budget(
                        self.budget_usd,
                        window=budget_window,
                        thresholds=("0.9",),
                        action=budget_action,  # type: ignore[arg-type]
                        name="global",
                    )
                ]
            )
            tracker = Tracker(budgets=budgets) if budgets else Tracker()
        self.tracker = tracker
        if tracker.budgets is not None:
            tracker.budgets.subscribe(self._alert)

    def _alert(self, alert: BudgetAlert) -> None:
        self.alerts.append(alert)
        level = "exceeded" if alert.threshold >= 1 else "warning"
        logger.warning("budget %s %s: %.1f%% spent", alert.budget, level, alert.percent)
        if self._on_alert is not None:
            self._on_alert(alert)

    def get_statistics(self) -> dict[str, Any]:
        """Totals, per-call averages, by-agent and by-model totals, and the budget used in percent."""
        totals = self.tracker.totals()
        total = UsageTotals.from_row(totals)
        calls = totals.calls
        return {
            "total_calls": calls,
            "total_input_tokens": total.input_tokens,
            "total_output_tokens": total.output_tokens,
            "total_tokens": total.total_tokens,
            "total_cost": total.cost,
            "unpriced_calls": total.unpriced_calls,
            "average_tokens_per_call": total.total_tokens / calls if calls else 0.0,
            "average_cost_per_call": total.cost / calls if calls else Decimal(0),
            "by_agent": self._by("agent"),
            "by_model": self._by("model"),
            "budget_usd": self.budget_usd,
            "budget_utilization_percent": self.budget_utilization_percent(),
        }

    def _by(self, key: str) -> dict[str, UsageTotals]:
        rows = sorted(self.tracker.summary(by=(key,)), key=lambda row: str(row.group[key]))
        return {str(row.group[key]): UsageTotals.from_row(row) for row in rows}

    def budget_utilization_percent(self) -> float | None:
        """Percent of the budget spent in its current window (None without a budget)."""
        if self.tracker.budgets is None:
            return None
        statuses = self.tracker.budget_status()
        return max((status.percent for status in statuses), default=0.0)

    def report(self, width: int = 100) -> str:
        """The human cost report (totals, by agent and by model with each one's share of the cost)."""
        from tokentrail.reports.tables import render_text

        return render_text(self.tracker, width=width)

    def export_to_json(self, path: str | Path) -> Path:
        """Totals, breakdowns and the whole usage history as JSON (`tokentrail.reports.export`)."""
        from tokentrail.reports.export import save

        return save(self.tracker, path)

    def plot_cost_by_agent(self, path: str | Path) -> str:
        """A bar chart of cost per agent (needs `tokentrail[charts]`)."""
        from tokentrail.reports.charts import plot

        return plot(self.tracker, "cost-by-agent", path)


_global: GlobalTokenTracker | None = None
_lock = threading.Lock()


def get_token_tracker(**options: Any) -> GlobalTokenTracker:
    """The process-wide tracker. The first call's options (`budget_usd`, `budget_window`, `on_alert`)
    build it and install its `Tracker` as `tokentrail.get_tracker()`; later options are ignored."""
    global _global
    with _lock:
        if _global is None:
            from tokentrail.tracker import configure, get_tracker

            if options.get("budget_usd") is None:
                _global = GlobalTokenTracker(get_tracker(), **options)
            else:
                _global = GlobalTokenTracker(**options)
                configure(_global.tracker)
        return _global


def reset_token_tracker() -> None:
    """Forget the process-wide tracker (for tests)."""
    global _global
    with _lock:
        _global = None
