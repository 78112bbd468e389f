"""An independent oracle: genai-prices' own usage extractors read the golden fixtures the same way."""

from __future__ import annotations

import pytest
from adapter_payloads import load

from tokentrail import Usage
from tokentrail.adapters import usage_from_response

genai_prices = pytest.importorskip("genai_prices")

# fixture → (genai-prices provider id, API flavor)
EXTRACTORS = {
    "openai/chat_completion.json": ("openai", "chat"),
    "openai/chat_reasoning_flex.json": ("openai", "chat"),
    "openai/chat_audio.json": ("openai", "chat"),
    "openai/azure_chat_completion.json": ("azure", "chat"),
    "anthropic/message_cache.json": ("anthropic", "default"),
    "anthropic/message_thinking_web_search.json": ("anthropic", "default"),
    "gemini/generate_content.json": ("google", "default"),
    "gemini/tool_use_long_prompt.json": ("google", "default"),
    "bedrock/converse_cache.json": ("aws", "default"),
    "bedrock/invoke_model_claude.json": ("aws", "anthropic"),
    "mistral/chat_completion.json": ("mistral", "default"),
    "cohere/chat_v2.json": ("cohere", "default"),
}
# genai-prices usage fields that a tokentrail Usage carries, and their names here.
SHARED_FIELDS = {
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
    "cache_read_tokens": "cache_read_tokens",
    "cache_write_tokens": "cache_write_tokens",
    "cache_write_1h_tokens": "cache_write_1h_tokens",
    "output_reasoning_tokens": "reasoning_tokens",
    "input_audio_tokens": "input_audio_tokens",
    "cache_audio_read_tokens": "cache_audio_read_tokens",
    "output_audio_tokens": "output_audio_tokens",
    "input_image_tokens": "input_image_tokens",
    "web_searches": "web_searches",
}


def as_genai_prices_fields(usage: Usage) -> dict[str, int]:
    return {theirs: getattr(usage, ours) for theirs, ours in SHARED_FIELDS.items()}


@pytest.mark.parametrize("name", sorted(EXTRACTORS))
def test_usage_matches_genai_prices_extractor(name: str) -> None:
    provider_id, flavor = EXTRACTORS[name]
    fixture = load(name)
    extracted = genai_prices.extract_usage(fixture.payload, provider_id=provider_id, api_flavor=flavor).usage
    theirs = {field: getattr(extracted, field, None) or 0 for field in SHARED_FIELDS}
    ours = usage_from_response(fixture.payload, fixture.capture_provider)
    assert as_genai_prices_fields(ours) == theirs
