"""LiteLLM `ModelResponse` (object or dict): OpenAI-shaped usage over any provider.

LiteLLM normalizes every provider to OpenAI's convention: `prompt_tokens` includes cached reads and
cache writes (for Anthropic it adds `cache_read_input_tokens` and `cache_creation_input_tokens` into it).
Cache reads are `prompt_tokens_details.cached_tokens` (else `usage.cache_read_input_tokens`), cache writes
`prompt_tokens_details.cache_write_tokens` / `cache_creation_tokens` (else
`usage.cache_creation_input_tokens`), the 1-hour part in `cache_creation_token_details`. Web searches come
from `server_tool_use.web_search_requests` (or `prompt_tokens_details.web_search_requests`).

`_hidden_params["response_cost"]`, LiteLLM's own cost estimate, is kept as `provider_cost`;
`_hidden_params["custom_llm_provider"]` names the provider that served the call.

A stream whose chunks carry no usage (LiteLLM strips it unless `stream_options.include_usage` was asked
for — Anthropic and Gemini streams never ask) keeps it in the last chunk's `_hidden_params["usage"]`:
the provider's report, or LiteLLM's `UnreportedUsage` marker when the provider sent none, which LiteLLM
replaces at the end of the stream with its own local count — recorded as `estimated`, never `complete`.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from tokentrail._types import Usage, UsageStatus
from tokentrail.adapters import openai
from tokentrail.adapters._base import (
    Captured,
    Fields,
    Malformed,
    build_usage,
    get_field,
    model_name,
    reported_cost,
    text_value,
)

__all__ = ["ESTIMATE_REASON", "ChatStream", "estimated", "extract", "model_response_usage", "response_cost"]

PROVIDER = "litellm"
ESTIMATE_REASON = (
    "LiteLLM counted this usage locally: the provider's stream reported none "
    "(OpenAI-style streams report it with stream_options={'include_usage': True})"
)


def estimated(usage: Usage) -> Usage:
    """LiteLLM's local count of a call the provider reported no usage for."""
    if usage.status is not UsageStatus.COMPLETE:
        return usage
    return dataclasses.replace(usage, status=UsageStatus.ESTIMATED, reason=ESTIMATE_REASON)


def is_unreported(usage: object) -> bool:
    """LiteLLM's marker (`UnreportedUsage`) for a stream whose provider sent no usage."""
    return type(usage).__name__ == "UnreportedUsage"


def model_response_usage(usage: Fields) -> Usage:
    """A LiteLLM `Usage` in the one convention."""
    counts = openai.chat_counts(usage)
    details = usage.child("prompt_tokens_details")
    cache_read = usage.optional_count("cache_read_input_tokens")
    cache_write = usage.optional_count("cache_creation_input_tokens")
    web_searches = 0
    cache_write_1h = 0
    if details is not None:
        read = details.optional_count("cached_tokens")
        cache_read = read if read is not None else cache_read
        written = details.optional_count("cache_write_tokens", "cache_creation_tokens")
        cache_write = written if written is not None else cache_write
        by_ttl = details.child("cache_creation_token_details")
        if by_ttl is not None:
            by_ttl.count("ephemeral_5m_input_tokens")
            cache_write_1h = by_ttl.count("ephemeral_1h_input_tokens")
        web_searches = details.count("web_search_requests")
    tools = usage.child("server_tool_use")
    if tools is not None:
        web_searches = tools.count("web_search_requests") or web_searches
    counts["cache_read_tokens"] = cache_read or 0
    counts["cache_write_tokens"] = cache_write or 0
    counts["cache_write_1h_tokens"] = cache_write_1h
    counts["web_searches"] = web_searches
    return build_usage(**counts)


def hidden_params(response: object) -> object:
    return get_field(response, "_hidden_params")


def response_cost(response: object) -> Decimal | None:
    """LiteLLM's own cost for the call, when it computed a usable one."""
    params = hidden_params(response)
    return reported_cost(get_field(params, "response_cost") if params is not None else None)


def served_by(response: object, default: str) -> str:
    params = hidden_params(response)
    provider = text_value(get_field(params, "custom_llm_provider")) if params is not None else None
    return provider or default


def extract(response: object, provider: str = PROVIDER) -> Captured:
    """Usage, model, serving provider and LiteLLM's cost of a ModelResponse."""
    raw_usage = get_field(response, "usage")
    if raw_usage is None:
        raise Malformed("response has no usage")
    usage = model_response_usage(Fields(raw_usage, "usage"))
    name = served_by(response, provider) if provider == PROVIDER else provider
    return Captured(
        usage, model_name(response), name, openai.price_context(response), response_cost(response)
    )


class ChatStream(openai.ChatStream):
    """LiteLLM stream chunks (`ModelResponseStream`): usage in the last chunk, as with OpenAI; LiteLLM's
    `response_cost` of that chunk is kept as the provider-reported cost."""

    def __init__(self, provider: str = PROVIDER) -> None:
        super().__init__(provider)
        self.provider_cost: Decimal | None = None
        self._kept: object = None  # the `_hidden_params` whose "usage" LiteLLM keeps for a stream
        self._kept_reported = False  # whether that usage was the provider's when its chunk went by

    def _read_usage(self, usage: Fields) -> Usage:
        return model_response_usage(usage)

    def _feed(self, event: object) -> None:
        super()._feed(event)
        if self.provider == PROVIDER:
            self.provider = served_by(event, PROVIDER)
        if get_field(event, "usage") is not None:  # LiteLLM prices the chunk that reports the usage
            self.provider_cost = response_cost(event)
            return
        params = hidden_params(event)
        kept = get_field(params, "usage") if params is not None else None
        if kept is not None:  # LiteLLM may still replace it by reference, at the end of the stream
            self._kept, self._kept_reported = params, not is_unreported(kept)

    def _seen(self) -> Usage | None:
        seen = super()._seen()
        if seen is not None or self._kept is None:
            return seen
        kept = get_field(self._kept, "usage")
        if kept is None or is_unreported(kept):
            return None
        usage = model_response_usage(Fields(kept, "_hidden_params.usage"))
        return usage if self._kept_reported else estimated(usage)

    def captured(self) -> Captured:
        return dataclasses.replace(super().captured(), provider_cost=self.provider_cost)
