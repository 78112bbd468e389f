"""AWS Bedrock: the Converse API, and InvokeModel bodies of Claude models.

Converse `usage.inputTokens` counts only the uncached prompt: cache reads (`cacheReadInputTokens`) and
cache writes (`cacheWriteInputTokens`) are reported beside it, not inside it, so
`input_tokens = inputTokens + cacheReadInputTokens + cacheWriteInputTokens`. `cacheDetails` splits the
writes by TTL ("5m" | "1h"); the "1h" part is `cache_write_1h_tokens`. This is how genai-prices' Bedrock
extractor and the Vercel AI SDK's `convertBedrockUsage` read it. The Converse response does not name the
model (it is the request's `modelId`), so `model` is None unless the caller knows it.

InvokeModel returns the model's own body: for Claude that is an Anthropic Messages body, read as such.
InvokeModelWithResponseStream wraps each Anthropic stream event in `{"chunk": {"bytes": ...}}`.
ConverseStream reports usage in its `metadata` event.

Other InvokeModel bodies: Amazon Titan embeddings report `inputTextTokenCount`; bodies without usage
(Cohere Embed on Bedrock, say) are read from the `X-Amzn-Bedrock-Input-Token-Count` /
`X-Amzn-Bedrock-Output-Token-Count` response headers, which instrumentation passes beside the body.
ApplyGuardrail reports policy units, not tokens: it is `unknown` with the units in its reason.
InvokeGuardrailChecks reports text units per check (`usage.contentFilter.textUnits`, `promptAttack`,
`sensitiveInformation`): `unknown` too, the units per check in the reason.
"""

from __future__ import annotations

from tokentrail._types import Usage
from tokentrail.adapters import anthropic
from tokentrail.adapters._base import (
    Captured,
    Fields,
    Malformed,
    StreamAccumulator,
    as_count,
    build_usage,
    decode_json_bytes,
    describe,
    get_field,
    is_record,
    model_name,
)

__all__ = ["ConverseStream", "InvokeModelStream", "converse_usage", "extract"]

PROVIDER = "bedrock"


def converse_usage(usage: Fields) -> Usage:
    """A Converse `usage` (TokenUsage) object in the one convention."""
    uncached = usage.count("inputTokens", required=True)
    output = usage.count("outputTokens", required=True)
    usage.count("totalTokens")
    cache_read = usage.count("cacheReadInputTokens")
    cache_write = usage.optional_count("cacheWriteInputTokens")
    by_ttl = {"5m": 0, "1h": 0}
    for detail in usage.records("cacheDetails"):
        ttl = (detail.text("ttl") or "").lower()
        tokens = detail.count("inputTokens", required=True)
        if ttl in by_ttl:
            by_ttl[ttl] += tokens
    if cache_write is None:
        cache_write = by_ttl["5m"] + by_ttl["1h"]
    return build_usage(
        input_tokens=uncached + cache_read + cache_write,
        output_tokens=output,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=by_ttl["1h"],
    )


_HEADER_INPUT = "x-amzn-bedrock-input-token-count"
_HEADER_OUTPUT = "x-amzn-bedrock-output-token-count"


def extract(response: object, provider: str = PROVIDER) -> Captured:
    """Usage of a Converse response, an InvokeModel response whose body was read, or a Claude body."""
    raw_usage = get_field(response, "usage")
    if raw_usage is None:
        body = get_field(response, "body")
        if body is None:
            raise Malformed("response has no usage")
        decoded = _decoded_body(body)
        if get_field(decoded, "usage") is None:
            return _other_body(decoded, get_field(response, "headers"), provider)
        return extract(decoded, provider)
    if (
        get_field(raw_usage, "topicPolicyUnits") is not None
        or get_field(raw_usage, "contentPolicyUnits") is not None
    ):
        return Captured(_guardrail_usage(raw_usage), None, provider, {})
    if any(is_record(get_field(raw_usage, check)) for check in _GUARDRAIL_CHECKS):
        return Captured(_guardrail_checks_usage(raw_usage), None, provider, {})
    if get_field(raw_usage, "inputTokens") is None and get_field(raw_usage, "input_tokens") is not None:
        return anthropic.extract(response, provider)
    usage = converse_usage(Fields(raw_usage, "usage"))
    return Captured(usage, model_name(response, "modelId", "model"), provider, {})


def _other_body(body: object, headers: object, provider: str) -> Captured:
    """An InvokeModel body without a `usage` block: Titan's count, else the token-count headers."""
    fields = Fields(body, "body")
    if fields.has("inputTextTokenCount"):
        return Captured(build_usage(input_tokens=fields.count("inputTextTokenCount")), None, provider, {})
    given = _header_count(headers, _HEADER_INPUT)
    if given is not None:
        usage = build_usage(input_tokens=given, output_tokens=_header_count(headers, _HEADER_OUTPUT) or 0)
        return Captured(usage, None, provider, {})
    raise Malformed("InvokeModel body has no usage and the response no token-count headers")


def _header_count(headers: object, name: str) -> int | None:
    """A token-count response header (a decimal string), or None when absent."""
    value = get_field(headers, name) if is_record(headers) else None
    if value is None:
        return None
    try:
        return as_count(int(str(value).strip()), f"header {name}")
    except ValueError:
        raise Malformed(f"header {name} is not a count: {describe(value)}") from None


def _guardrail_usage(raw_usage: object) -> Usage:
    units = Fields(raw_usage, "usage")
    names = (
        "topicPolicyUnits",
        "contentPolicyUnits",
        "wordPolicyUnits",
        "sensitiveInformationPolicyUnits",
        "contextualGroundingPolicyUnits",
        "contentPolicyImageUnits",
    )
    text = ", ".join(f"{n}={units.count(n)}" for n in names if units.has(n))
    return Usage.unknown(f"ApplyGuardrail is billed in policy units ({text}); tokentrail.Usage counts tokens")


_GUARDRAIL_CHECKS = ("contentFilter", "promptAttack", "sensitiveInformation")


def _guardrail_checks_usage(raw_usage: object) -> Usage:
    """InvokeGuardrailChecks `usage`: the text units each check consumed (GuardrailChecksUsageResults)."""
    units = Fields(raw_usage, "usage")
    counts = []
    for check in _GUARDRAIL_CHECKS:
        child = units.child(check)
        if child is not None:
            counts.append(f"{check}={child.count('textUnits', required=True)}")
    return Usage.unknown(
        f"InvokeGuardrailChecks is billed in text units ({', '.join(counts)}); tokentrail.Usage counts tokens"
    )


def _decoded_body(body: object) -> object:
    if isinstance(body, (bytes, bytearray, memoryview, str)):
        return decode_json_bytes(body, "InvokeModel body")
    if callable(get_field(body, "read")):
        raise Malformed("InvokeModel body is an unread stream: read it and pass the decoded JSON body")
    if is_record(body):
        return body
    raise Malformed(f"InvokeModel body must be bytes, text or a decoded object, got {describe(body)}")


class ConverseStream(StreamAccumulator):
    """ConverseStream events: the `metadata` event carries the usage."""

    def __init__(self, provider: str = PROVIDER) -> None:
        super().__init__(provider)
        self._usage: Usage | None = None

    def _feed(self, event: object) -> None:
        metadata = get_field(event, "metadata")
        if metadata is None:
            return
        raw_usage = get_field(metadata, "usage")
        if raw_usage is None:
            raise Malformed("metadata event has no usage")
        self._usage = converse_usage(Fields(raw_usage, "metadata.usage"))
        self.final = True

    def _seen(self) -> Usage | None:
        return self._usage


class InvokeModelStream(anthropic.MessageStream):
    """InvokeModelWithResponseStream events of a Claude model: Anthropic events inside `chunk.bytes`."""

    def __init__(self, provider: str = PROVIDER) -> None:
        super().__init__(provider)

    def _feed(self, event: object) -> None:
        chunk = get_field(event, "chunk")
        super()._feed(
            decode_json_bytes(get_field(chunk, "bytes"), "chunk.bytes") if chunk is not None else event
        )
