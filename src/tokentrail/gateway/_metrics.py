"""The gateway's own counters, turned into Prometheus metrics at scrape time (no per-request metric
objects on the hot path; an injectable registry, so two gateways in one process never share state).

Labels are route, upstream name and status: never a key, header or body.

Latencies are histograms by route and upstream: `request_duration_seconds` (the request read until the
response's last byte is handed to the server) and `upstream_headers_seconds` (forwarded until the
upstream's status and headers arrived), both only for requests that were forwarded.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["GatewayMetrics", "Histogram"]

# seconds: from well under a millisecond (the gateway's own work) to minutes (long streams)
BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)  # fmt: skip


class Histogram:
    """Counts per bucket for each label tuple; `observe` is a bisect and two additions."""

    __slots__ = ("counts", "sums")

    def __init__(self) -> None:
        self.counts: dict[tuple[str, ...], list[int]] = {}
        self.sums: dict[tuple[str, ...], float] = {}

    def observe(self, labels: tuple[str, ...], seconds: float) -> None:
        counts = self.counts.get(labels)
        if counts is None:
            counts = self.counts[labels] = [0] * (len(BUCKETS) + 1)
            self.sums[labels] = 0.0
        counts[bisect_left(BUCKETS, seconds)] += 1
        self.sums[labels] += seconds

    def buckets(self, labels: tuple[str, ...]) -> list[tuple[str, float]]:
        """Cumulative (le, count) pairs ending with +Inf, as the exposition format has them."""
        total = 0
        cumulative = []
        for bound, count in zip((*map(str, BUCKETS), "+Inf"), self.counts[labels], strict=True):
            total += count
            cumulative.append((bound, float(total)))
        return cumulative


class GatewayMetrics:
    """Plain counters the request path bumps; `render()` exposes them in the Prometheus text format."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str, int]] = Counter()  # (route, upstream, status)
        self.refused: Counter[tuple[str, str]] = Counter()  # (upstream, reason)
        self.upstream_errors: Counter[tuple[str, str]] = Counter()  # (upstream, kind)
        self.client_disconnects = 0
        self.in_flight = 0
        self.durations = Histogram()  # (route, upstream): request read → response's last byte
        self.upstream_headers = Histogram()  # (route, upstream): forwarded → upstream status and headers
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
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

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
        for name, text, histogram in (
            (
                "tokentrail_gateway_request_duration_seconds",
                "Forwarded requests from the body read to the response's last byte, by route and upstream.",
                m.durations,
            ),
            (
                "tokentrail_gateway_upstream_headers_seconds",
                "Time from forwarding until the upstream's status and headers arrived, by route and upstream.",
                m.upstream_headers,
            ),
        ):
            family = HistogramMetricFamily(name, text, labels=["route", "upstream"])
            for labels in sorted(histogram.counts):
                family.add_metric(list(labels), histogram.buckets(labels), histogram.sums[labels])
            yield family
        if m.extra is not None:
            for name, value in sorted(m.extra().items()):
                yield GaugeMetricFamily(f"tokentrail_gateway_{name}", name.replace("_", " "), value=value)
