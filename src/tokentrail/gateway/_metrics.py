"""The gateway's own counters, turned into Prometheus metrics at scrape time (no per-request metric
objects on the hot path; an injectable registry, so two gateways in one process never share state).

Labels are route, upstream name and status: never a key, header or body.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["GatewayMetrics"]


class GatewayMetrics:
    """Plain counters the request path bumps; `render()` exposes them in the Prometheus text format."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str, int]] = Counter()  # (route, upstream, status)
        self.refused: Counter[tuple[str, str]] = Counter()  # (upstream, reason)
        self.upstream_errors: Counter[tuple[str, str]] = Counter()  # (upstream, kind)
        self.client_disconnects = 0
        self.in_flight = 0
        self.extra: Callable[[], dict[str, float]] | None = None  # e.g. budget back-end errors

    def render(self) -> tuple[bytes, str]:
        """(the exposition body, its content type)."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self))
        return generate_latest(registry), CONTENT_TYPE_LATEST


class _Collector:
    def __init__(self, metrics: GatewayMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        m = self.metrics
        requests = CounterMetricFamily(
            "tokentrail_gateway_requests",
            "Requests answered, by route, upstream and status.",
            labels=["route", "upstream", "status"],
        )
        for (route, upstream, status), count in sorted(m.requests.items()):
            requests.add_metric([route, upstream, str(status)], count)
        yield requests
        refused = CounterMetricFamily(
            "tokentrail_gateway_refused",
            "Requests refused before forwarding, by upstream and reason.",
            labels=["upstream", "reason"],
        )
        for (upstream, reason), count in sorted(m.refused.items()):
            refused.add_metric([upstream, reason], count)
        yield refused
        errors = CounterMetricFamily(
            "tokentrail_gateway_upstream_errors",
            "Upstreams that could not be reached or timed out.",
            labels=["upstream", "kind"],
        )
        for (upstream, kind), count in sorted(m.upstream_errors.items()):
            errors.add_metric([upstream, kind], count)
        yield errors
        yield CounterMetricFamily(
            "tokentrail_gateway_client_disconnects",
            "Responses the client left before their end.",
            value=m.client_disconnects,
        )
        yield GaugeMetricFamily("tokentrail_gateway_in_flight", "Requests being answered.", value=m.in_flight)
        if m.extra is not None:
            for name, value in sorted(m.extra().items()):
                yield GaugeMetricFamily(f"tokentrail_gateway_{name}", name.replace("_", " "), value=value)
