"""OTLP/HTTP trace export bodies → `SpanData`: protobuf (`application/x-protobuf`, read with
opentelemetry-proto's generated classes) and JSON (`application/json`: camelCase field names, trace
and span ids in hex, 64-bit integers as strings), either one gzip-compressed or not.

Only the attributes the span reader looks at (`spans.READ_KEYS`) are decoded; prompts and outputs
stay unread bytes. Anything not an export request raises `Malformed` with the reason (the endpoint
answers 400 and records nothing); a body over the limit, compressed or not, raises `TooLarge`.

Spec: https://opentelemetry.io/docs/specs/otlp/#otlphttp (JSON: "trace and span identifiers ... are
represented as case-insensitive hex-encoded strings"; "lowerCamelCase field names"; int64 as decimal
strings or numbers, per the protobuf JSON mapping).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

from tokentrail.ingest.spans import READ_KEYS, SpanData

__all__ = [
    "DEFAULT_MAX_BYTES",
    "JSON",
    "PROTOBUF",
    "Malformed",
    "TooLarge",
    "UnsupportedMedia",
    "decode",
    "decode_json",
    "decode_protobuf",
    "inflate",
]

DEFAULT_MAX_BYTES = 16 * 1024 * 1024  # a request body, before and after gzip (the Collector allows 20 MiB)
PROTOBUF = "application/x-protobuf"
JSON = "application/json"


class Malformed(ValueError):
    """The body is not an OTLP trace export request; the message says why."""


class TooLarge(ValueError):
    """The body, or what it inflates to, is over the limit."""


class UnsupportedMedia(ValueError):
    """A content type or encoding the endpoint does not read."""


def inflate(body: bytes, encoding: str | None, limit: int = DEFAULT_MAX_BYTES) -> bytes:
    """The body without its Content-Encoding (identity or gzip), refusing more than `limit` bytes."""
    name = (encoding or "identity").strip().lower()
    if name in ("", "identity"):
        if len(body) > limit:
            raise TooLarge(f"the body is {len(body)} bytes; the limit is {limit}")
        return body
    if name != "gzip":
        raise UnsupportedMedia(f"Content-Encoding {encoding!r} is not supported (gzip or none)")
    inflater = zlib.decompressobj(wbits=31)  # gzip header and trailer
    try:
        data = inflater.decompress(body, limit + 1)
        if len(data) > limit or inflater.unconsumed_tail:
            raise TooLarge(f"the gzip body inflates past the limit of {limit} bytes")
        data += inflater.flush()
    except zlib.error as exc:
        raise Malformed(f"the gzip body cannot be read: {exc}") from None
    if not inflater.eof:
        raise Malformed("the gzip body is truncated")
    if len(data) > limit:
        raise TooLarge(f"the gzip body inflates past the limit of {limit} bytes")
    return data


def decode(body: bytes, content_type: str | None) -> list[SpanData]:
    """The spans of an export request in the given media type (parameters such as charset ignored)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == PROTOBUF:
        return decode_protobuf(body)
    if media == JSON:
        return decode_json(body)
    raise UnsupportedMedia(f"Content-Type {content_type!r} is not OTLP ({PROTOBUF} or {JSON})")


# -- protobuf --------------------------------------------------------------------------------------------


def _request_class() -> Any:
    try:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    except ImportError as exc:  # the `otlp` extra is not installed
        raise UnsupportedMedia(
            f"reading {PROTOBUF} needs opentelemetry-proto (pip install 'tokentrail[otlp]'): {exc}"
        ) from None
    return ExportTraceServiceRequest


def decode_protobuf(body: bytes) -> list[SpanData]:
    request = _request_class()()
    try:
        request.ParseFromString(body)
    except Exception as exc:  # google.protobuf.message.DecodeError and friends
        raise Malformed(f"the body is not an OTLP ExportTraceServiceRequest: {exc}") from None
    keys = READ_KEYS
    out: list[SpanData] = []
    append = out.append
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                trace_id, span_id = span.trace_id, span.span_id
                if len(trace_id) != 16 or len(span_id) != 8:
                    raise Malformed(
                        f"span {span.name!r} has a {len(trace_id)}-byte trace id and a {len(span_id)}-byte "
                        "span id (16 and 8 expected)"
                    )
                attributes: dict[str, object] = {}
                for pair in span.attributes:
                    key = pair.key
                    if key in keys:
                        value = pair.value
                        kind = value.WhichOneof("value")
                        if kind is not None:
                            attributes[key] = _proto_value(value, kind)
                append(
                    SpanData(
                        trace_id,
                        span_id,
                        span.parent_span_id,
                        span.name,
                        span.start_time_unix_nano,
                        span.end_time_unix_nano,
                        attributes,
                    )
                )
    return out


def _proto_value(value: Any, kind: str) -> object:
    if kind == "array_value":
        return [_proto_value(item, item.WhichOneof("value")) for item in value.array_value.values]
    if kind == "kvlist_value":
        return None  # no key the reader looks at holds a map
    return getattr(value, kind)


# -- JSON ------------------------------------------------------------------------------------------------


def decode_json(body: bytes) -> list[SpanData]:
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Malformed(f"the body is not JSON: {exc}") from None
    if not isinstance(request, dict):
        raise Malformed("the body is not an OTLP export request (a JSON object with resourceSpans)")
    out: list[SpanData] = []
    for resource_spans in _list(request, "resourceSpans", "resource_spans", "the request"):
        for scope_spans in _list(resource_spans, "scopeSpans", "scope_spans", "resourceSpans[]"):
            for span in _list(scope_spans, "spans", "spans", "scopeSpans[]"):
                out.append(_json_span(span))
    return out


def _list(parent: object, camel: str, snake: str, where: str) -> list[Any]:
    if not isinstance(parent, dict):
        raise Malformed(f"{where} is not an object")
    value = parent.get(camel, parent.get(snake))
    if value is None:
        return []
    if not isinstance(value, list):
        raise Malformed(f"{where}.{camel} is not a list")
    return value


def _field(span: Mapping[str, Any], camel: str, snake: str) -> Any:
    value = span.get(camel)
    return span.get(snake) if value is None else value


def _json_span(span: object) -> SpanData:
    if not isinstance(span, dict):
        raise Malformed("a span is not an object")
    name = _field(span, "name", "name") or ""
    if not isinstance(name, str):
        raise Malformed("a span's name is not a string")
    trace_id = _hex_id(_field(span, "traceId", "trace_id"), 16, "traceId", name)
    span_id = _hex_id(_field(span, "spanId", "span_id"), 8, "spanId", name)
    parent = _field(span, "parentSpanId", "parent_span_id")
    parent_id = _hex_id(parent, 8, "parentSpanId", name) if parent else b""
    start = _uint64(_field(span, "startTimeUnixNano", "start_time_unix_nano"), "startTimeUnixNano", name)
    end = _uint64(_field(span, "endTimeUnixNano", "end_time_unix_nano"), "endTimeUnixNano", name)
    raw_attributes = span.get("attributes") or []
    if not isinstance(raw_attributes, list):
        raise Malformed(f"span {name!r}: attributes is not a list")
    return SpanData(trace_id, span_id, parent_id, name, start, end, _json_attributes(raw_attributes, name))


def _json_attributes(pairs: Iterable[object], name: str) -> dict[str, object]:
    attributes: dict[str, object] = {}
    keys = READ_KEYS
    for pair in pairs:
        if not isinstance(pair, dict) or not isinstance(pair.get("key"), str):
            raise Malformed(f"span {name!r}: an attribute is not a {{key, value}} object")
        key = pair["key"]
        if key in keys:
            value = _json_value(pair.get("value"), key, name)
            if value is not None:
                attributes[key] = value
    return attributes


def _json_value(value: object, key: str, name: str) -> object:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise Malformed(f"span {name!r}: attribute {key!r} has no AnyValue object")
    if "stringValue" in value or "string_value" in value:
        return _field(value, "stringValue", "string_value")
    if "intValue" in value or "int_value" in value:
        raw = _field(value, "intValue", "int_value")
        try:
            return int(raw) if isinstance(raw, (int, str)) and not isinstance(raw, bool) else _bad(raw)
        except ValueError:
            raise Malformed(f"span {name!r}: attribute {key!r} intValue {raw!r} is not an integer") from None
    if "doubleValue" in value or "double_value" in value:
        raw = _field(value, "doubleValue", "double_value")
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise Malformed(f"span {name!r}: attribute {key!r} doubleValue {raw!r} is not a number") from None
    if "boolValue" in value or "bool_value" in value:
        return bool(_field(value, "boolValue", "bool_value"))
    if "arrayValue" in value or "array_value" in value:
        array = _field(value, "arrayValue", "array_value") or {}
        items = array.get("values") or [] if isinstance(array, dict) else []
        return [_json_value(item, key, name) for item in items]
    return None  # kvlistValue, bytesValue, an empty AnyValue: nothing the reader uses


def _bad(raw: object) -> int:
    raise ValueError(raw)


def _hex_id(value: object, size: int, what: str, name: str) -> bytes:
    if not isinstance(value, str):
        raise Malformed(f"span {name!r}: {what} is missing or not a hex string")
    try:
        ident = bytes.fromhex(value)
    except ValueError:
        raise Malformed(f"span {name!r}: {what} {value!r} is not hex") from None
    if len(ident) != size:
        raise Malformed(f"span {name!r}: {what} {value!r} is {len(ident)} bytes, not {size}")
    return ident


def _uint64(value: object, what: str, name: str) -> int:
    if value is None:
        return 0
    try:
        number = int(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else -1
    except ValueError:
        number = -1
    if not 0 <= number < 2**64:
        raise Malformed(f"span {name!r}: {what} {value!r} is not a uint64")
    return number
