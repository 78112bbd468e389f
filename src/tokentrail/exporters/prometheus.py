"""Prometheus metrics computed at scrape time from the tracker's own totals.

`Collector` keeps no metric state of its own: each scrape asks `tracker.summary(by=labels)` and turns the
rows into counters, so recording a call costs nothing extra. Label cardinality is bounded: the first
`max_series` label sets seen keep their own series and any later ones are folded into one series whose
labels all read "other" (a label set never moves between the two, so every counter stays monotonic).

Needs `prometheus_client` (extra `tokentrail[prometheus]`); importing this module is what loads it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

try:
    from prometheus_client import CollectorRegistry, make_wsgi_app
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
    from prometheus_client.registry import Collector as _PrometheusCollector
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "tokentrail.exporters.prometheus needs prometheus_client: pip install 'tokentrail[prometheus]'"
    ) from exc

from tokentrail._money import UNITS_PER_USD
from tokentrail._record import SummaryRow

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from tokentrail.tracker import Tracker

__all__ = ["LABEL_CHOICES", "OTHER", "Collector", "metrics_app"]

LABEL_CHOICES = ("provider", "model", "agent", "session", "user", "tool")
OTHER = "other"
TOKEN_TYPES = (
    ("input", "input_tokens"),
    ("output", "output_tokens"),
    ("cache_read", "cache_read_tokens"),
    ("cache_write", "cache_write_tokens"),
    ("reasoning", "reasoning_tokens"),
)

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class Collector(_PrometheusCollector):
    """Exposes a tracker's tokens, cost, requests, durations and budgets, computed at each scrape.

    Pass `registry` to register it there (tests and `metrics_app` use a dedicated `CollectorRegistry`;
    `prometheus_client.REGISTRY` is never touched unless you pass it). A missing label value (a call
    with no agent, say) is exposed as the empty string.
    """

    def __init__(
        self,
        tracker: Tracker,
        registry: CollectorRegistry | None = None,
        labels: Sequence[str] = ("provider", "model", "agent"),
        max_series: int = 500,
    ) -> None:
        unknown = [label for label in labels if label not in LABEL_CHOICES]
        if unknown:
            raise ValueError(f"unknown label(s) {unknown}; choose from {', '.join(LABEL_CHOICES)}")
        if len(set(labels)) != len(labels):
            raise ValueError(f"labels repeat: {list(labels)}")
        if max_series < 1:
            raise ValueError(f"max_series must be at least 1, got {max_series}")
        self.tracker = tracker
        self.labels = tuple(labels)
        self.max_series = max_series
        self._admitted: set[tuple[str, ...]] = set()
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    def describe(self) -> Iterable[Metric]:
        return []  # series depend on the data; nothing to check for name clashes up front

    def collect(self) -> Iterator[Metric]:
        series = self._series(self.tracker.summary(by=self.labels))
        label_names = list(self.labels)
        tokens = CounterMetricFamily(
            "tokentrail_tokens", "Tokens used, by token type.", labels=[*label_names, "type"]
        )
        cost = CounterMetricFamily(
            "tokentrail_cost_usd", "Cost of the priced calls in US dollars.", labels=label_names
        )
        requests = CounterMetricFamily("tokentrail_requests", "Tracked calls.", labels=label_names)
        unpriced = CounterMetricFamily(
            "tokentrail_unpriced_requests", "Tracked calls that could not be priced.", labels=label_names
        )
        duration = SummaryMetricFamily(
            "tokentrail_request_duration_seconds",
            "Call duration, over the calls that reported one.",
            labels=label_names,
        )
        for values, row in series:
            label_values = list(values)
            for token_type, field in TOKEN_TYPES:
                tokens.add_metric([*label_values, token_type], getattr(row.usage, field))
            cost.add_metric(label_values, row.cost_units / UNITS_PER_USD)
            requests.add_metric(label_values, row.calls)
            unpriced.add_metric(label_values, row.unpriced_calls)
            duration.add_metric(label_values, count_value=row.timed_calls, sum_value=row.duration_ms / 1000)
        yield from (tokens, cost, requests, unpriced, duration)
        yield from self._budget_metrics()

    def _series(self, rows: list[SummaryRow]) -> list[tuple[tuple[str, ...], SummaryRow]]:
        """Rows keyed by label values, with label sets beyond the cap summed into one "other" row."""
        keyed = [(tuple(_label_value(row.group.get(label)) for label in self.labels), row) for row in rows]
        # the largest spenders get the free slots first when several new label sets arrive at once
        keyed.sort(key=lambda item: (-item[1].cost_units, -item[1].calls, item[0]))
        kept: list[tuple[tuple[str, ...], SummaryRow]] = []
        folded: list[SummaryRow] = []
        with self._lock:
            for values, row in keyed:
                if values not in self._admitted and len(self._admitted) < self.max_series:
                    self._admitted.add(values)
                if values in self._admitted:
                    kept.append((values, row))
                else:
                    folded.append(row)
        if folded:
            kept.append(((OTHER,) * len(self.labels), _fold(folded)))
        return kept

    def _budget_metrics(self) -> Iterator[Metric]:
        statuses = self.tracker.budget_status()
        if not statuses:
            return
        names = ["budget", "window", "scope"]
        spent = GaugeMetricFamily(
            "tokentrail_budget_spent_usd", "Settled spend in the budget's current window (USD).", labels=names
        )
        limit = GaugeMetricFamily("tokentrail_budget_limit_usd", "The budget's USD limit.", labels=names)
        percent = GaugeMetricFamily(
            "tokentrail_budget_used_percent", "Settled spend as a percentage of the limit.", labels=names
        )
        for status in statuses:
            values = [status.budget, status.window, _scope_text(status.scope)]
            spent.add_metric(values, _usd(status.spent_usd))
            if status.limit_usd is not None:
                limit.add_metric(values, _usd(status.limit_usd))
            percent.add_metric(values, status.percent)
        yield from (spent, limit, percent)


def metrics_app(
    tracker: Tracker,
    labels: Sequence[str] = ("provider", "model", "agent"),
    max_series: int = 500,
) -> WsgiApp:
    """A WSGI app serving this tracker's metrics (and nothing else) at any path, to mount or serve."""
    registry = CollectorRegistry(auto_describe=False)
    Collector(tracker, registry=registry, labels=labels, max_series=max_series)
    app: WsgiApp = make_wsgi_app(registry)
    return app


def _label_value(value: object) -> str:
    return "" if value is None else str(value)


def _scope_text(scope: dict[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(scope.items()))


def _usd(amount: Decimal) -> float:
    return float(amount)


def _fold(rows: list[SummaryRow]) -> SummaryRow:
    """The sum of `rows` for the fields the collector exposes."""
    first, *rest = rows
    usage = first.usage
    for row in rest:
        usage = usage + row.usage
    return SummaryRow(
        group={},
        calls=sum(row.calls for row in rows),
        unpriced_calls=sum(row.unpriced_calls for row in rows),
        usage=usage,
        cost_units=sum(row.cost_units for row in rows),
        duration_ms=sum(row.duration_ms for row in rows),
        timed_calls=sum(row.timed_calls for row in rows),
    )
