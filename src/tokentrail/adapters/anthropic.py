"""Anthropic Messages (also Claude on Bedrock InvokeModel and on Vertex: same body).

`usage.input_tokens` counts only the uncached prompt, so `input_tokens` here is
`input_tokens + cache_read_input_tokens + cache_creation_input_tokens`; cache writes split by TTL in
`cache_creation.ephemeral_5m_input_tokens` / `ephemeral_1h_input_tokens` (the 1-hour part is
`cache_write_1h_tokens`). `output_tokens` already counts thinking; `output_tokens_details.thinking_tokens`
is the reasoning share. `server_tool_use.web_search_requests` counts web searches. `usage.service_tier`
("standard", "priority", "batch") and `usage.speed` are the price variant that served the call.

Streaming: `message_start` carries the input and cache counts (and a first output count);
every `message_delta` carries *cumulative* counts, so the last one replaces, never adds to, what came
before.
"""

from __future__ import annotations

from typing import Any

from tokentrail._types import Usage
from tokentrail.adapters._base import (
    Captured,
    Fields,
    Malformed,
    StreamAccumulator,
    build_usage,
    get_field,
    model_name,
    text_value,
)

__all__ = ["MessageStream", "batch_result", "extract", "message_usage", "price_context"]

# Fields of a usage object that a stream event may carry; later events replace earlier values.
_STREAMED_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "cache_creation",
    "server_tool_use",
    "output_tokens_details",
    "service_tier",
    "speed",
)


def message_usage(usage: Fields) -> Usage:
    """A Messages `usage` object in the one convention (cached prompt tokens added into input)."""
    uncached = usage.count("input_tokens", required=True)
    output = usage.count("output_tokens", required=True)
    cache_read = usage.count("cache_read_input_tokens")
    cache_write = usage.optional_count("cache_creation_input_tokens")
    cache_write_1h = 0
    by_ttl = usage.child("cache_creation")
    if by_ttl is not None:
        five_minutes = by_ttl.count("ephemeral_5m_input_tokens")
        cache_write_1h = by_ttl.count("ephemeral_1h_input_tokens")
        if cache_write is None:
            cache_write = five_minutes + cache_write_1h
    cache_write = cache_write or 0
    reasoning = 0
    details = usage.child("output_tokens_details")
    if details is not None:
        reasoning = details.count("thinking_tokens")
    web_searches = 0
    tools = usage.child("server_tool_use")
    if tools is not None:
        web_searches = tools.count("web_search_requests")
        tools.count("web_fetch_requests")
    return build_usage(
        input_tokens=uncached + cache_read + cache_write,
        output_tokens=output,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=cache_write_1h,
        reasoning_tokens=reasoning,
        web_searches=web_searches,
    )


def price_context(usage: object) -> dict[str, str]:
    context: dict[str, str] = {}
    tier = text_value(get_field(usage, "service_tier"))
    if tier:
        context["service_tier"] = tier
        if tier == "batch":
            context["processing"] = "batch"
    speed = text_value(get_field(usage, "speed"))
    if speed:
        context["speed"] = speed
    return context


def extract(response: object, provider: str = "anthropic") -> Captured:
    """Usage of a Message (SDK object or JSON body)."""
    raw_usage = get_field(response, "usage")
    if raw_usage is None:
        raise Malformed("message has no usage")
    usage = Fields(raw_usage, "usage")
    return Captured(message_usage(usage), model_name(response), provider, price_context(raw_usage))


def batch_result(item: object, provider: str = "anthropic") -> Captured | None:
    """One line of Message Batches results: a succeeded result's message, billed at batch prices; None for
    errored, canceled and expired results, which are not billed. Its `response_id` is the message id, so a
    result read again (the results fetched twice) is recorded once."""
    result = get_field(item, "result")
    if text_value(get_field(result, "type")) != "succeeded":
        return None
    message = get_field(result, "message")
    captured = extract(message, provider)
    context = {**captured.price_context, "processing": "batch"}
    message_id = text_value(get_field(message, "id"))
    return Captured(captured.usage, captured.model, provider, context, response_id=message_id or None)


class MessageStream(StreamAccumulator):
    """Messages stream events: input from `message_start`, cumulative output from `message_delta`."""

    def __init__(self, provider: str = "anthropic") -> None:
        super().__init__(provider)
        self._usage: dict[str, Any] | None = None

    def _feed(self, event: object) -> None:
        kind = text_value(get_field(event, "type"))
        if kind == "message_start":
            message = get_field(event, "message")
            if message is None:
                raise Malformed("message_start event has no message")
            self.model = model_name(message) or self.model
            self._take(get_field(message, "usage"), "message_start.message.usage", replace=True)
        elif kind == "message_delta":
            try:
                self._take(get_field(event, "usage"), "message_delta.usage", replace=False)
            except Malformed:
                self._usage = None  # the final report is broken: what came before is not the call's usage
                raise
            self.final = True

    def _take(self, usage: object, where: str, *, replace: bool) -> None:
        if usage is None:
            raise Malformed(f"{where} is missing")
        fields = Fields(usage, where)
        if not replace and get_field(fields.obj, "output_tokens") is None:
            raise Malformed(f"{where}.output_tokens is missing")
        snapshot: dict[str, Any] = {} if replace or self._usage is None else dict(self._usage)
        for name in _STREAMED_FIELDS:
            value = get_field(fields.obj, name)
            if value is not None:
                snapshot[name] = value
        self._usage = snapshot
        self.price_context.update(price_context(snapshot))

    def _seen(self) -> Usage | None:
        if self._usage is None:
            return None
        return message_usage(Fields(self._usage, "stream usage"))
