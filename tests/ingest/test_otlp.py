"""OTLP/HTTP bodies → spans: protobuf as the real Python exporter encodes it, OTLP/JSON as the spec
writes it (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding), gzip, and refusals."""

from __future__ import annotations

import gzip
import json

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tokentrail.ingest.otlp import Malformed, TooLarge, UnsupportedMedia, decode, inflate

JSON_EXPORT = {
    "resourceSpans": [
        {
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "agents"}}]},
            "scopeSpans": [
                {
                    "scope": {"name": "manual"},
                    "spans": [
                        {
                            "traceId": "5B8EFFF798038103D269B633813FC60C",
                            "spanId": "EEE19B7EC3C1B174",
                            "parentSpanId": "EEE19B7EC3C1B173",
                            "name": "chat gpt-4o-mini",
                            "kind": 3,
                            "startTimeUnixNano": "1544712660000000000",
                            "endTimeUnixNano": "1544712661000000000",
                            "attributes": [
                                {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini"}},
                                {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "42"}},
                                {"key": "gen_ai.usage.output_tokens", "value": {"intValue": 7}},
                                {"key": "gen_ai.prompt", "value": {"stringValue": "not read"}},
                                {"key": "llm.token_count.total", "value": {"doubleValue": 49.0}},
                                {
                                    "key": "gen_ai.response.finish_reasons",
                                    "value": {"arrayValue": {"values": []}},
                                },
                            ],
                        }
                    ],
                }
            ],
        }
    ]
}


def test_json_export_decoded() -> None:
    (span,) = decode(json.dumps(JSON_EXPORT).encode(), "application/json; charset=utf-8")
    assert span.trace_id == bytes.fromhex("5b8efff798038103d269b633813fc60c")
    assert span.span_id == bytes.fromhex("eee19b7ec3c1b174")
    assert span.parent_span_id == bytes.fromhex("eee19b7ec3c1b173")
    assert (span.start_ns, span.end_ns) == (1544712660000000000, 1544712661000000000)
    assert span.attributes == {
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": 42,
        "gen_ai.usage.output_tokens": 7,
        "llm.token_count.total": 49.0,
    }


def test_protobuf_from_the_real_encoder_with_gzip() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("invoke_agent") as parent:
        parent.set_attribute("gen_ai.agent.name", "researcher")
        with tracer.start_as_current_span("chat") as child:
            child.set_attribute("gen_ai.usage.input_tokens", 12)
            child.set_attribute("gen_ai.usage.output_tokens", 3)
            child.set_attribute("gen_ai.response.finish_reasons", ["stop"])
            child.set_attribute("gen_ai.input.messages", "[...]")
    body = encode_spans(exporter.get_finished_spans()).SerializeToString()
    spans = decode(inflate(gzip.compress(body), "gzip"), "application/x-protobuf")
    by_name = {span.name: span for span in spans}
    chat, agent = by_name["chat"], by_name["invoke_agent"]
    assert chat.attributes == {"gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 3}
    assert chat.parent_span_id == agent.span_id and chat.trace_id == agent.trace_id
    assert agent.attributes == {"gen_ai.agent.name": "researcher"}
    assert chat.end_ns >= chat.start_ns > 0


@pytest.mark.parametrize(
    ("body", "media", "reason"),
    [
        (b"{not json", "application/json", "not JSON"),
        (b"[1, 2]", "application/json", "not an OTLP export request"),
        (b'{"resourceSpans": {}}', "application/json", "is not a list"),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz", "spanId": "00"}]}]}]}',
            "application/json",
            "traceId 'zz' is not hex",
        ),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "00", "spanId": "0000000000000001"}]}]}]}',
            "application/json",
            "is 1 bytes, not 16",
        ),
        (b"\xff\xff\xff\xff", "application/x-protobuf", "not an OTLP ExportTraceServiceRequest"),
    ],
)
def test_malformed_bodies_say_why(body: bytes, media: str, reason: str) -> None:
    with pytest.raises(Malformed, match=reason):
        decode(body, media)


def test_protobuf_with_a_short_span_id_is_malformed() -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = b"\x01" * 16, b"\x02" * 4, "chat"
    with pytest.raises(Malformed, match="4-byte span id"):
        decode(request.SerializeToString(), "application/x-protobuf")


def test_limits_and_media_types() -> None:
    with pytest.raises(TooLarge):
        inflate(b"x" * 101, None, limit=100)
    bomb = gzip.compress(b"\0" * 10_000)
    assert len(bomb) < 100
    with pytest.raises(TooLarge):
        inflate(bomb, "gzip", limit=1000)
    with pytest.raises(Malformed, match="gzip"):
        inflate(b"not gzip", "gzip")
    with pytest.raises(Malformed, match="truncated"):
        inflate(gzip.compress(b"x" * 1000)[:-12], "gzip")
    with pytest.raises(UnsupportedMedia):
        inflate(b"", "br")
    with pytest.raises(UnsupportedMedia):
        decode(b"", "text/plain")
