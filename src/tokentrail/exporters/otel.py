"""OpenTelemetry metrics and span attributes for each tracked call, named per the GenAI semantic
conventions.

Names used, as given by the OpenTelemetry GenAI semantic conventions (status: Development):

- metrics (https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-metrics/):
  `gen_ai.client.token.usage` (histogram, `{token}`, attribute `gen_ai.token.type` = input|output) and
  `gen_ai.client.operation.duration` (histogram, seconds), with the bucket boundaries the spec advises;
- attributes (https://opentelemetry.io/docs/specs/semconv/registry/attributes/gen-ai/):
  `gen_ai.operation.name`, `gen_ai.request.model`, `gen_ai.provider.name` (which replaced the
  deprecated `gen_ai.system`, still set here for older consumers), `gen_ai.usage.input_tokens`,
  `gen_ai.usage.output_tokens`, `gen_ai.usage.cache_read.input_tokens` and
  `gen_ai.usage.cache_creation.input_tokens` (the older spellings `gen_ai.usage.cache_read_input_tokens`
  and `gen_ai.usage.cache_creation_input_tokens` are set too).

The cost counter `tokentrail.cost` (USD) is tokentrail's own: the conventions define no cost metric.
Needs `opentelemetry-api` (extra `tokentrail[otel]`); without an SDK configured everything is a no-op.
"""

from __future__ import annotations

from collections.abc import Mapping

try:
    from opentelemetry import metrics, trace
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "tokentrail.exporters.otel needs opentelemetry-api: pip install 'tokentrail[otel]'"
    ) from exc

from tokentrail._money import UNITS_PER_USD
from tokentrail._record import Record
from tokentrail._types import UsageStatus

__all__ = ["COST_METRIC", "DURATION_METRIC", "TOKEN_USAGE_METRIC", "OtelSink", "span_attributes"]

TOKEN_USAGE_METRIC = "gen_ai.client.token.usage"
DURATION_METRIC = "gen_ai.client.operation.duration"
COST_METRIC = "tokentrail.cost"

# bucket boundaries the GenAI metrics conventions advise for each histogram
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)

AttributeValue = str | int | float


class OtelSink:
    """A tracker sink recording GenAI metrics per call and, on the active span, its usage attributes.

    `meter_provider` defaults to the global one (a no-op until an SDK is installed). Span attributes
    go on whatever span is current when the call is recorded; a span covering several calls keeps the
    last call's values.
    """

    __slots__ = ("_cost", "_duration", "_token_usage", "operation_name", "record_span_attributes")

    def __init__(
        self,
        meter_provider: metrics.MeterProvider | None = None,
        record_span_attributes: bool = True,
        operation_name: str = "chat",
    ) -> None:
        provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        meter = provider.get_meter("tokentrail")
        self._token_usage = meter.create_histogram(
            TOKEN_USAGE_METRIC,
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self._duration = meter.create_histogram(
            DURATION_METRIC,
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._cost = meter.create_counter(
            COST_METRIC, unit="USD", description="Cost of the priced GenAI calls in US dollars."
        )
        self.record_span_attributes = record_span_attributes
        self.operation_name = operation_name

    def __call__(self, record: Record) -> None:
        attributes = metric_attributes(record, self.operation_name)
        usage = record.usage
        if usage.status is not UsageStatus.UNKNOWN:  # no usage known: report none rather than zeros
            self._token_usage.record(usage.input_tokens, {**attributes, "gen_ai.token.type": "input"})
            self._token_usage.record(usage.output_tokens, {**attributes, "gen_ai.token.type": "output"})
        if record.duration_ms is not None:
            self._duration.record(record.duration_ms / 1000, attributes)
        if record.cost_units is not None:
            self._cost.add(record.cost_units / UNITS_PER_USD, attributes)
        if self.record_span_attributes:
            span = trace.get_current_span()
            if span.is_recording():
                span.set_attributes(span_attributes(record, self.operation_name))


def metric_attributes(record: Record, operation_name: str) -> dict[str, AttributeValue]:
    """The low-cardinality attributes every metric point of this call carries."""
    attributes: dict[str, AttributeValue] = {"gen_ai.operation.name": operation_name}
    if record.model is not None:
        attributes["gen_ai.request.model"] = record.model
    if record.provider is not None:
        attributes["gen_ai.provider.name"] = record.provider
        attributes["gen_ai.system"] = record.provider
    return attributes


def span_attributes(record: Record, operation_name: str = "chat") -> Mapping[str, AttributeValue]:
    """The attributes set on the active span: model, provider, token usage and tokentrail's cost."""
    attributes = metric_attributes(record, operation_name)
    usage = record.usage
    if usage.status is not UsageStatus.UNKNOWN:
        attributes.update(
            {
                "gen_ai.usage.input_tokens": usage.input_tokens,
                "gen_ai.usage.output_tokens": usage.output_tokens,
                "gen_ai.usage.cache_read.input_tokens": usage.cache_read_tokens,
                "gen_ai.usage.cache_read_input_tokens": usage.cache_read_tokens,
                "gen_ai.usage.cache_creation.input_tokens": usage.cache_write_tokens,
                "gen_ai.usage.cache_creation_input_tokens": usage.cache_write_tokens,
            }
        )
    if record.cost_units is not None:
        attributes["tokentrail.cost_usd"] = record.cost_units / UNITS_PER_USD
    return attributes
