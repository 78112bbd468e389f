"""OtelSink: GenAI metrics read back with InMemoryMetricReader, span attributes with InMemorySpanExporter."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tokentrail as tt
from tokentrail.exporters.otel import OtelSink


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def sink(reader: InMemoryMetricReader) -> OtelSink:
    return OtelSink(meter_provider=MeterProvider(metric_readers=[reader]))


def points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    if data is None:  # nothing recorded at all
        return []
    return [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


def metric_unit(reader: InMemoryMetricReader, name: str) -> str | None:
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    return metric.unit
    return None


def test_token_usage_histogram_by_token_type(reader: InMemoryMetricReader, sink: OtelSink) -> None:
    tracker = tt.Tracker(sinks=[sink])
    tracker.record(tt.Usage(1_000, 200), model="gpt-4o")
    tracker.record(tt.Usage(3_000, 100), model="gpt-4o")
    by_type = {
        point.attributes["gen_ai.token.type"]: point for point in points(reader, "gen_ai.client.token.usage")
    }
    assert set(by_type) == {"input", "output"}
    assert (by_type["input"].sum, by_type["input"].count) == (4_000, 2)
    assert (by_type["output"].sum, by_type["output"].count) == (300, 2)
    attributes = by_type["input"].attributes
    assert attributes["gen_ai.request.model"] == "gpt-4o"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.system"] == "openai"
    assert attributes["gen_ai.operation.name"] == "chat"
    assert metric_unit(reader, "gen_ai.client.token.usage") == "{token}"


def test_token_buckets_follow_the_conventions(reader: InMemoryMetricReader, sink: OtelSink) -> None:
    tt.Tracker(sinks=[sink]).record(tt.Usage(10, 10), model="gpt-4o")
    (point, _) = points(reader, "gen_ai.client.token.usage")
    assert tuple(point.explicit_bounds)[:4] == (1, 4, 16, 64)


def test_duration_in_seconds(reader: InMemoryMetricReader, sink: OtelSink) -> None:
    tracker = tt.Tracker(sinks=[sink])
    tracker.record(tt.Usage(10, 10), model="gpt-4o", duration_ms=1500)
    tracker.record(tt.Usage(10, 10), model="gpt-4o")
    (point,) = points(reader, "gen_ai.client.operation.duration")
    assert (point.sum, point.count) == (1.5, 1)
    assert metric_unit(reader, "gen_ai.client.operation.duration") == "s"


def test_cost_counter_in_usd(reader: InMemoryMetricReader, sink: OtelSink) -> None:
    tracker = tt.Tracker(sinks=[sink])
    record = tracker.record(tt.Usage(1_000_000, 0), model="gpt-4o")
    tracker.record(tt.Usage(10, 10), model="in-house-7b")
    assert record.cost is not None
    (point,) = points(reader, "tokentrail.cost")
    assert point.value == pytest.approx(float(record.cost))
    assert point.attributes["gen_ai.request.model"] == "gpt-4o"


def test_unknown_usage_reports_no_tokens(reader: InMemoryMetricReader, sink: OtelSink) -> None:
    tt.Tracker(sinks=[sink]).record(tt.Usage.unknown("stream lost"), model="gpt-4o")
    assert points(reader, "gen_ai.client.token.usage") == []


def test_span_attributes_under_both_cache_names(sink: OtelSink) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracker = tt.Tracker(sinks=[sink])
    with provider.get_tracer("test").start_as_current_span("llm call"):
        tracker.record(tt.Usage(1_000, 200, cache_read_tokens=300, cache_write_tokens=100), model="gpt-4o")
    (span,) = exporter.get_finished_spans()
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.usage.input_tokens"] == 1_000
    assert attributes["gen_ai.usage.output_tokens"] == 200
    assert attributes["gen_ai.usage.cache_read.input_tokens"] == 300
    assert attributes["gen_ai.usage.cache_read_input_tokens"] == 300
    assert attributes["gen_ai.usage.cache_creation.input_tokens"] == 100
    assert attributes["gen_ai.usage.cache_creation_input_tokens"] == 100
    assert attributes["gen_ai.request.model"] == "gpt-4o"
    assert attributes["gen_ai.provider.name"] == "openai"


def test_span_attributes_can_be_switched_off(reader: InMemoryMetricReader) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    sink = OtelSink(meter_provider=MeterProvider(metric_readers=[reader]), record_span_attributes=False)
    with provider.get_tracer("test").start_as_current_span("llm call"):
        tt.Tracker(sinks=[sink]).record(tt.Usage(10, 10), model="gpt-4o")
    (span,) = exporter.get_finished_spans()
    assert "gen_ai.usage.input_tokens" not in (span.attributes or {})


def test_without_a_span_or_sdk_nothing_fails() -> None:
    tracker = tt.Tracker(sinks=[OtelSink()])
    tracker.record(tt.Usage(10, 10), model="gpt-4o")
    assert tracker.sink_errors == 0
