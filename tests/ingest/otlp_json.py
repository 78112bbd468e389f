"""Build OTLP/JSON trace exports the way the spec writes them (hex ids, camelCase, int64 as strings):
https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding."""

from __future__ import annotations

import json
from typing import Any

BASE_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z


def any_value(value: object) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [any_value(item) for item in value]}}
    return {"stringValue": str(value)}


def span(
    span_id: int,
    attributes: dict[str, object],
    *,
    trace: int = 1,
    parent: int = 0,
    name: str = "chat",
    end_ms: int = 1000,
    duration_ms: int = 250,
    end_ns: int | None = None,
) -> dict[str, Any]:
    end = BASE_NS + end_ms * 1_000_000 if end_ns is None else end_ns
    return {
        "traceId": f"{trace:032x}",
        "spanId": f"{span_id:016x}",
        "parentSpanId": f"{parent:016x}" if parent else "",
        "name": name,
        "kind": 3,
        "startTimeUnixNano": str(end - duration_ms * 1_000_000),
        "endTimeUnixNano": str(end),
        "attributes": [{"key": key, "value": any_value(value)} for key, value in attributes.items()],
    }


def export(*spans: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "test"}}]},
                    "scopeSpans": [{"scope": {"name": "test"}, "spans": list(spans)}],
                }
            ]
        }
    ).encode()


def chat(
    input_tokens: int = 100, output_tokens: int = 20, model: str = "gpt-4o-mini", **extra: object
) -> dict[str, object]:
    """A GenAI chat span's attributes (opentelemetry-instrumentation-openai-v2 names)."""
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": model,
        "gen_ai.usage.input_tokens": input_tokens,
        "gen_ai.usage.output_tokens": output_tokens,
        **extra,
    }
