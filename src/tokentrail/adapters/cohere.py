"""Cohere chat (v2): `usage.billed_units` (what is billed) and `usage.tokens` (everything the model saw,
prompt template included).

Billing follows `billed_units.input_tokens` / `output_tokens`, so those are used when present; `tokens`
is the fallback, with `cached_tokens` as cache reads. Counts may arrive as whole floats (the SDK types
them as floats). The v2 response does not name the model, so `model` is None unless the caller knows it.
Streaming: the `message-end` event's `delta.usage` carries the usage.
"""

from __future__ import annotations

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

__all__ = ["ChatStream", "chat_usage", "extract"]

PROVIDER = "cohere"


def chat_usage(usage: Fields) -> Usage:
    """A v2 `usage` object in the one convention."""
    billed = usage.child("billed_units")
    tokens = usage.child("tokens")
    cached = usage.count("cached_tokens")
    for counts in (billed, tokens):
        if counts is not None:
            counts.count("input_tokens")
            counts.count("output_tokens")
    if tokens is not None and cached > tokens.count("input_tokens"):
        raise Malformed(f"{usage.path}.cached_tokens ({cached}) exceeds tokens.input_tokens")
    if billed is not None and billed.has("input_tokens") and billed.has("output_tokens"):
        return build_usage(
            input_tokens=billed.count("input_tokens"),
            output_tokens=billed.count("output_tokens"),
        )
    if tokens is not None and tokens.has("input_tokens") and tokens.has("output_tokens"):
        return build_usage(
            input_tokens=tokens.count("input_tokens"),
            output_tokens=tokens.count("output_tokens"),
            cache_read_tokens=cached,
        )
    raise Malformed(f"{usage.path} has neither billed_units nor tokens with input_tokens and output_tokens")


def extract(response: object, provider: str = PROVIDER) -> Captured:
    """Usage of a v2 chat response (SDK object or JSON body)."""
    raw_usage = get_field(response, "usage")
    if raw_usage is None:
        raise Malformed("response has no usage")
    return Captured(chat_usage(Fields(raw_usage, "usage")), model_name(response), provider, {})


class ChatStream(StreamAccumulator):
    """v2 chat stream events: `message-end` carries the usage in `delta.usage`."""

    def __init__(self, provider: str = PROVIDER) -> None:
        super().__init__(provider)
        self._usage: Usage | None = None

    def _feed(self, event: object) -> None:
        if text_value(get_field(event, "type")) != "message-end":
            return
        delta = get_field(event, "delta")
        raw_usage = get_field(delta, "usage") if delta is not None else None
        if raw_usage is None:
            raise Malformed("message-end event has no delta.usage")
        self._usage = chat_usage(Fields(raw_usage, "message-end.delta.usage"))
        self.final = True

    def _seen(self) -> Usage | None:
        return self._usage
