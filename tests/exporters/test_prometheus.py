"""The scrape-time Collector: exposition parsed back with prometheus_client.parser, exact values."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import tokentrail as tt
from tokentrail.exporters.prometheus import Collector, metrics_app

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(registry: CollectorRegistry) -> Samples:
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def labels(**values: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(values.items()))


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry(auto_describe=False)


def test_counters_match_the_recorded_calls(registry: CollectorRegistry) -> None:
    tracker = tt.Tracker()
    Collector(tracker, registry=registry)
    first = tracker.record(tt.Usage(1_000, 200, cache_read_tokens=300), model="gpt-4o", agent="a")
    second = tracker.record(tt.Usage(2_000, 100, reasoning_tokens=40), model="gpt-4o", agent="a")
    samples = scrape(registry)
    series = {"provider": "openai", "model": "gpt-4o", "agent": "a"}
    assert first.provider == "openai"
    assert samples[("tokentrail_tokens_total", labels(**series, type="input"))] == 3_000
    assert samples[("tokentrail_tokens_total", labels(**series, type="output"))] == 300
    assert samples[("tokentrail_tokens_total", labels(**series, type="cache_read"))] == 300
    assert samples[("tokentrail_tokens_total", labels(**series, type="cache_write"))] == 0
    assert samples[("tokentrail_tokens_total", labels(**series, type="reasoning"))] == 40
    assert samples[("tokentrail_requests_total", labels(**series))] == 2
    assert samples[("tokentrail_unpriced_requests_total", labels(**series))] == 0
    assert first.cost is not None and second.cost is not None
    assert samples[("tokentrail_cost_usd_total", labels(**series))] == float(first.cost + second.cost)


def test_values_are_computed_at_scrape_time(registry: CollectorRegistry) -> None:
    tracker = tt.Tracker()
    Collector(tracker, registry=registry, labels=("model",))
    tracker.record(tt.Usage(10, 10), model="gpt-4o")
    assert scrape(registry)[("tokentrail_requests_total", labels(model="gpt-4o"))] == 1
    tracker.record(tt.Usage(10, 10), model="gpt-4o")
    assert scrape(registry)[("tokentrail_requests_total", labels(model="gpt-4o"))] == 2


def test_unpriced_calls_are_counted_not_costed(registry: CollectorRegistry) -> None:
    tracker = tt.Tracker()
    Collector(tracker, registry=registry, labels=("model",))
    tracker.record(tt.Usage(10, 10), model="in-house-7b")
    samples = scrape(registry)
    assert samples[("tokentrail_unpriced_requests_total", labels(model="in-house-7b"))] == 1
    assert samples[("tokentrail_cost_usd_total", labels(model="in-house-7b"))] == 0


def test_duration_sum_and_count_cover_timed_calls(registry: CollectorRegistry) -> None:
    tracker = tt.Tracker()
    Collector(tracker, registry=registry, labels=("model",))
    tracker.record(tt.Usage(10, 10), model="gpt-4o", duration_ms=1500)
    tracker.record(tt.Usage(10, 10), model="gpt-4o", duration_ms=500)
    tracker.record(tt.Usage(10, 10), model="gpt-4o")
    samples = scrape(registry)
    assert samples[("tokentrail_request_duration_seconds_count", labels(model="gpt-4o"))] == 2
    assert samples[("tokentrail_request_duration_seconds_sum", labels(model="gpt-4o"))] == 2.0


def test_missing_label_values_are_empty(registry: CollectorRegistry) -> None:
    tracker = tt.Tracker()
    Collector(tracker, registry=registry, labels=("model", "agent"))
    tracker.record(tt.Usage(10, 10), model="gpt-4o")
    assert scrape(registry)[("tokentrail_requests_total", labels(model="gpt-4o", agent=""))] == 1


def test_cardinality_is_capped_with_an_other_series(registry: CollectorRegistry) -> None:
    tracker = tt.Tracker()
    Collector(tracker, registry=registry, labels=("agent",), max_series=2)
    for agent, calls in (("big", 3), ("mid", 2), ("small-1", 1), ("small-2", 1)):
        for _ in range(calls):
            tracker.record(tt.Usage(100, 10), model="gpt-4o", agent=agent)
    requests = {
        key[1]: value for key, value in scrape(registry).items() if key[0] == "tokentrail_requests_total"
    }
    assert requests == {labels(agent="big"): 3, labels(agent="mid"): 2, labels(agent="other"): 2}


def test_a_series_once_folded_stays_in_other(registry: CollectorRegistry) -> None:
    tracker = tt.Tracker()
    Collector(tracker, registry=registry, labels=("agent",), max_series=1)
    tracker.record(tt.Usage(100, 10), model="gpt-4o", agent="first")
    scrape(registry)
    for _ in range(5):
        tracker.record(tt.Usage(100, 10), model="gpt-4o", agent="later")
    samples = scrape(registry)
    assert samples[("tokentrail_requests_total", labels(agent="first"))] == 1
    assert samples[("tokentrail_requests_total", labels(agent="other"))] == 5


def test_budget_gauges(registry: CollectorRegistry) -> None:
    tracker = tt.Tracker(budgets=[tt.Budget(limit_usd="10", name="monthly")])
    Collector(tracker, registry=registry, labels=("model",))
    record = tracker.record(tt.Usage(1_000_000, 0), model="gpt-4o")
    assert record.cost is not None
    (status,) = tracker.budget_status()
    series = labels(budget="monthly", window=status.window, scope="")
    samples = scrape(registry)
    assert samples[("tokentrail_budget_limit_usd", series)] == 10
    assert samples[("tokentrail_budget_spent_usd", series)] == float(record.cost)
    assert samples[("tokentrail_budget_used_percent", series)] == status.percent


def test_no_budget_gauges_without_budgets(registry: CollectorRegistry) -> None:
    tracker = tt.Tracker()
    Collector(tracker, registry=registry)
    tracker.record(tt.Usage(10, 10), model="gpt-4o")
    assert not any(name.startswith("tokentrail_budget") for name, _ in scrape(registry))


def test_unknown_label_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown label"):
        Collector(tt.Tracker(), labels=("prompt",))


def test_metrics_app_serves_the_exposition() -> None:
    tracker = tt.Tracker()
    tracker.record(tt.Usage(10, 10), model="gpt-4o", agent="a")
    app = metrics_app(tracker)
    started: list[str] = []

    def start_response(status: str, headers: Iterable[Any], *_: Any) -> Callable[[bytes], None]:
        started.append(status)
        return lambda _: None

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", "QUERY_STRING": ""}
    body = b"".join(app(environ, start_response)).decode()
    assert started == ["200 OK"]
    families = {family.name: family for family in text_string_to_metric_families(body)}
    (sample,) = families["tokentrail_requests"].samples
    assert sample.value == 1 and sample.labels == {"provider": "openai", "model": "gpt-4o", "agent": "a"}
