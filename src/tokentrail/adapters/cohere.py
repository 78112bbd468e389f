"""Cohere chat (v2): `usage.billed_units` (what is billed) and `usage.tokens` (everything the model saw,
prompt template included).

Billing follows `billed_units.input_tokens` / `output_tokens`, so those are used when both are present;
`tokens` is the fallback (either count may be absent, as Cohere's schema allows: an absent one is 0), with
`cached_tokens` as cache reads. Counts may arrive as whole floats (the SDK types
them as floats). The v2 response does not name the model, so `model` is None unless the caller knows it.
Streaming: the `message-end` event's `delta.usage` carries the usage.

Embed, rerank, parse and the v1 endpoints report `meta.billed_units` instead: `input_tokens` /
`output_tokens` are read as tokens, rerank's `search_units` as `rerank_searches` and v2 parse's `pages` as
`input_document_pages`; a call billed in units `Usage` has no count for (classify's `classifications`,
embed's `images`) is `unknown` with the units in its reason. A v1 chat stream ends with a `stream-end`
event whose `response.meta` carries the usage; a v1 generate stream's `stream-end` response has no `meta`
in Cohere's schema (`GenerateStreamEndResponse`: id, prompt, generations), so such a stream is `unknown`
with that reason unless the API sends one anyway.
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

__all__ = ["ChatStream", "chat_usage", "extract", "meta_usage"]

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
    if tokens is not None and (tokens.has("input_tokens") or tokens.has("output_tokens")):
        # Both counts are optional in Cohere's schema (UsageTokens); a missing one is none (genai-prices'
        # `tokens` flavor reads it so too).
        return build_usage(
            input_tokens=tokens.count("input_tokens"),
            output_tokens=tokens.count("output_tokens"),
            cache_read_tokens=cached,
        )
    raise Malformed(f"{usage.path} has neither billed_units with input_tokens and output_tokens nor tokens")


_TOKEN_UNITS = ("input_tokens", "output_tokens")
_OTHER_UNITS = ("search_units", "classifications", "images", "image_tokens", "pages")
# units a Usage carries beside tokens: Cohere's name → the Usage count (genai-prices' usage key)
_CARRIED = {"search_units": "rerank_searches", "pages": "input_document_pages"}


def meta_usage(meta: object) -> Usage:
    """A `meta` (ApiMeta) object's `billed_units` in the one convention: tokens, rerank search units and
    parsed pages are carried; a call billed in other units (classifications, images) gives `unknown`."""
    billed = get_field(meta, "billed_units")
    if billed is None:
        raise Malformed("meta has no billed_units")
    fields = Fields(billed, "meta.billed_units")
    others = [name for name in _OTHER_UNITS if name not in _CARRIED and fields.has(name)]
    carried = {count: fields.count(name) for name, count in _CARRIED.items() if fields.has(name)}
    if not others and (carried or any(fields.has(unit) for unit in _TOKEN_UNITS)):
        return build_usage(
            input_tokens=fields.count("input_tokens"), output_tokens=fields.count("output_tokens"), **carried
        )
    units = ", ".join(
        f"{name}={fields.count(name)}" for name in (*_OTHER_UNITS, *_TOKEN_UNITS) if fields.has(name)
    )
    if not units:
        raise Malformed("meta.billed_units reports no unit")
    return Usage.unknown(f"Cohere billed this call in {units}; tokentrail.Usage has no count for them")


def extract(response: object, provider: str = PROVIDER) -> Captured:
    """Usage of a v2 chat response, or of an embed / rerank / v1 response (`meta`), SDK object or JSON."""
    raw_usage = get_field(response, "usage")
    if raw_usage is None:
        meta = get_field(response, "meta")
        if meta is None:
            raise Malformed("response has neither usage nor meta")
        return Captured(meta_usage(meta), model_name(response), provider, {})
    return Captured(chat_usage(Fields(raw_usage, "usage")), model_name(response), provider, {})


class ChatStream(StreamAccumulator):
    """v2 chat stream events: `message-end` carries the usage in `delta.usage`; v1 chat and generate
    streams: `stream-end` carries it in `response.meta` (generate's, per Cohere's schema, does not)."""

    def __init__(self, provider: str = PROVIDER) -> None:
        super().__init__(provider)
        self._usage: Usage | None = None

    def _feed(self, event: object) -> None:
        if text_value(get_field(event, "event_type")) == "stream-end":  # v1 chat stream
            response = get_field(event, "response")
            meta = get_field(response, "meta")
            if meta is None and get_field(response, "generations") is not None:
                raise Malformed(
                    "the v1 generate stream's stream-end event reports no billed units (Cohere's "
                    "GenerateStreamEndResponse has no meta); generate() without streaming reports them"
                )
            if meta is None:
                raise Malformed("stream-end event has no response.meta")
            self._usage = meta_usage(meta)
            self.final = True
            return
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
